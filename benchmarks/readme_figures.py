"""Print the README's result tables from a results folder, so the README cannot drift from the code.

Run after the default pipeline (`snakemake --cores 8 all`):
    python benchmarks/readme_figures.py [--results results]
Prints, as Markdown: each study's verdict and its criteria (preconditions, expectations, checks)
from results/<study>/criteria.json, the Re-Basin mechanism (SRS) table, the barrier table, the
repair grid and the retrofit comparison.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from weightlab.errors import WeightlabError
from weightlab.io import read_json
from weightlab.tables import format_value
from weightlab.verdicts import criteria_of, ordered


def rebasin_tables(results: Path) -> list[str]:
    srs = read_json(results / "rebasin/srs.json")["models"]
    lines = ["| model | ID (env A) | OOD (no patch) | counterfactual | flip rate | SRS |", "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {v['id_accuracy']:.3f} | {v['ood_accuracy']:.3f} | {v['cf_accuracy']:.3f} | {v['flip_rate']:.3f} | {v['srs']:.3f} |"
              for m, v in srs.items()]
    pairs = read_json(results / "barriers.json")["pairs"]
    lines += ["", "| pair | kind | loss barrier naive → aligned | accuracy barrier naive → aligned | semantic barrier naive → aligned |",
              "|---|---|---|---|---|"]
    for key, pair in pairs.items():
        cells = [f"{pair['naive'][m]:.3f} → {pair['aligned'][m]:.3f}" for m in ("loss_barrier", "accuracy_barrier", "semantic_barrier")]
        lines.append(f"| {key.replace('-', '–')} | {pair['kind']} | " + " | ".join(cells) + " |")
    return lines


STUDIES = ("rebasin", "repair", "retrofit", "separability", "drift")


def _cell(value: object) -> str:
    return format_value(value).replace("|", "/")


def verdict_table(results: Path, source: str) -> list[str]:
    """A verdict and every criterion of a criteria document, preconditions first: `source` is a
    study (results/<study>/criteria.json) or a path under results ending in .json."""
    document = read_json(results / source if source.endswith(".json") else results / source / "criteria.json")
    lines = [f"verdict: **{document['verdict']}** — {document['reason']}", "",
             "| criterion | kind | threshold | measured | 95% interval | verdict |", "|---|---|---|---|---|---|"]
    for c in ordered(criteria_of(document)):
        shown = c.verdict.replace("_", " ")
        lines.append(f"| {c.id} | {c.kind} | {_cell(c.threshold)} | {_cell(c.value)} | {_cell(c.interval)} | "
                     f"{shown if c.verdict == 'pass' else f'**{shown}**'} |")
    return lines


def width_sweep_table(results: Path) -> list[str]:
    """The Re-Basin width sweep (`snakemake rebasin_width`): mean loss barrier [95% interval] over
    pairs at every width, and the sweep's verdict with its criteria."""
    sweep = read_json(results / "rebasin/width_sweep.json")
    groups = ("same/naive", "same/aligned", "different/naive", "different/aligned")
    lines = ["| multiplier (width) | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for width, summary in sorted(sweep["summary"].items(), key=lambda kv: float(kv[0])):
        cells = [f"{format_value(summary[g]['mean'], '.3f')} {_cell(summary[g]['ci95'])}" for g in groups]
        lines.append(f"| ×{width} ({sweep['models'][width].get('width')}) | " + " | ".join(cells) + " |")
    document_lines = verdict_table(results, "rebasin/width_sweep.json")
    return lines + [""] + document_lines


def verdicts_overview(results: Path) -> list[str]:
    """One line per study: its verdict and why (a study not run yet says so)."""
    lines = ["| study | verdict | why |", "|---|---|---|"]
    for study in STUDIES:
        try:
            document = read_json(results / study if study.endswith(".json") else results / study / "criteria.json")
            lines.append(f"| {study} | {document['verdict']} | {document['reason']} |")
        except WeightlabError:
            lines.append(f"| {study} | — | not run yet |")
    return lines


def repair_table(results: Path) -> list[str]:
    summary = read_json(results / "repair/summary.json")
    lines = [f"base test accuracy {summary['base']['test_accuracy']:.3f}", "",
             "| edit set | n | objective | repaired | test accuracy after | L∞ | L1 | LP variables | solver | LP + solve (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(summary["records"], key=lambda r: (r["repair_set_type"], str(r["target_class"]), r["requested_repair_set_size"])):
        lines.append(f"| {r['experiment_id']} | {r['actual_repair_set_size']} | {r['lp_objective_kind']} | {r['repair_successful']} | "
                     f"{format_value(r['repaired_accuracy_test_set'], '.3f')} | {format_value(r['delta_linf'], '.2f')} | {format_value(r['delta_l1'], '.1f')} | "
                     f"{r['lp_variables']} | {r['solver']} | {format_value(r['repair_runtime_seconds'], '.2f')} |")
    return lines


def retrofit_table(results: Path) -> list[str]:
    summary = read_json(results / "retrofit/summary.json")
    base = summary["baseline"]
    lines = [f"baseline: perplexity {base['perplexity']:.1f}, FFN Gram conditioning {base['conditioning']:.1f}", "",
             "| method | final FFN Gram conditioning | final perplexity | wall time per 100 steps |", "|---|---|---|---|"]
    for run, row in summary["runs"].items():
        lines.append(f"| {run} | {row['final_conditioning']:.1f} ({row['conditioning_change']:+.1%}) | {row['final_perplexity']:,.1f} | "
                     f"{row['seconds_per_100_steps']:.0f} s |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", type=Path)
    args = parser.parse_args()
    sections = [("Verdicts", verdicts_overview),
                *((f"Criteria: {study}", lambda results, study=study: verdict_table(results, study)) for study in STUDIES),
                ("Re-Basin", rebasin_tables), ("Re-Basin width sweep", width_sweep_table), ("Provable repair", repair_table),
                ("Geometry retrofit", retrofit_table)]
    for title, make in sections:
        path_ok = True
        try:
            lines = make(args.results)
        except (WeightlabError, KeyError) as err:  # a study not run yet (or an older results format): say so and go on
            lines, path_ok = [f"(not available: {err})"], False
        print(f"## {title}" + ("" if path_ok else " — run the pipeline first") + "\n")
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
