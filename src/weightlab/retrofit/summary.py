"""Every retrofit run against the unmodified baseline (summary.json) and the comparison table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from weightlab.errors import InputError
from weightlab.io import read_json
from weightlab.retrofit.design import METRICS, RUNS
from weightlab.tables import format_value


def _change(final: float | None, initial: float | None) -> float | None:
    if final is None or initial is None or not math.isfinite(initial) or initial == 0:
        return None
    return (final - initial) / initial


def summarise(results: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Every run against the unmodified baseline: final values and relative changes."""
    runs = {}
    for run, result in results.items():
        final = result["final"]
        runs[run] = {
            "method": result["method"],
            "steps": result["trajectory"]["steps"][-1],
            "transports": result.get("transports", 0),
            **{f"final_{k}": final[k] for k in METRICS},
            **{f"{k}_change": _change(final[k], baseline[k]) for k in METRICS},
            "conditioning_improved": final["conditioning"] < baseline["conditioning"],
            "perplexity_improved": final["perplexity"] < baseline["perplexity"],
            "seconds_per_100_steps": result["timing"]["seconds_per_100_steps"],
        }
    best = lambda key: min(runs, key=lambda r: runs[r][key]) if runs else None  # noqa: E731
    return {
        "baseline": {k: baseline[k] for k in METRICS},
        "runs": runs,
        "lowest_conditioning": best("final_conditioning"),
        "lowest_perplexity": best("final_perplexity"),
    }


def _ratio(change: float | None) -> str:
    return format_value(None) if change is None else "x" + format_value(change + 1, ".3g")


def comparison_table(summary: Mapping[str, Any]) -> str:
    """The comparison table the original's compare_retrofit_results.py printed, from summary.json."""
    base = summary["baseline"]
    columns = (f"{'method':<11}{'steps':>6}{'FFN Gram cond':>15}{'change':>9}{'act. cov cond':>15}"
               f"{'val PPL':>11}{'PPL ratio':>11}{'s/100 steps':>13}")
    rows = [columns, "-" * len(columns),
            f"{'baseline':<11}{0:>6}{format_value(base['conditioning'], ',.1f'):>15}{'':>9}"
            f"{format_value(base['activation_conditioning'], '.3g'):>15}{format_value(base['perplexity'], '.2f'):>11}{'':>11}{'':>13}"]
    for run, row in summary["runs"].items():
        rows.append(
            f"{run:<11}{row['steps']:>6}{format_value(row['final_conditioning'], ',.1f'):>15}"
            f"{format_value(row['conditioning_change'], '+.1%'):>9}{format_value(row['final_activation_conditioning'], '.3g'):>15}"
            f"{format_value(row['final_perplexity'], '.4g'):>11}{_ratio(row['perplexity_change']):>11}"
            f"{format_value(row['seconds_per_100_steps'], '.0f'):>13}"
        )
    rows.append("change and ratio are against the unmodified baseline; "
                f"lowest conditioning: {summary['lowest_conditioning']}; lowest perplexity: {summary['lowest_perplexity']}")
    return "\n".join(rows)


def load_results(folder: str | Path) -> tuple[dict[str, dict], dict]:
    """The runs' JSON files in `folder` and the baseline measurement."""
    folder = Path(folder)
    results = {run: read_json(folder / f"{run}.json") for run in RUNS if (folder / f"{run}.json").is_file()}
    if not results:
        raise InputError(f"no retrofit results ({', '.join(f'{r}.json' for r in RUNS)}) in {folder}; run the workflow first.")
    if (folder / "baseline.json").is_file():
        baseline = read_json(folder / "baseline.json")["initial"]
    else:
        baseline = next(iter(results.values()))["initial"]
    return results, baseline
