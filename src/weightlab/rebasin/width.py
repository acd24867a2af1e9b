"""The Re-Basin width sweep: loss barriers against width, the mean and interval over pairs at
every width, and its expectation (weightlab.verdicts). Torch-free: reads interpolation and
alignment records.

Expectation (the hypothesis in its strongest form; Ainsworth et al. find the barrier after weight
matching falling toward zero as width grows): the same-mechanism aligned loss barrier decreases
with width, and the different-mechanism aligned barrier stays above it at every width. The first
reads the 95% interval of the least-squares slope of the pairs' barriers against log2(multiplier)
("decreases": the interval lies below 0); the second the Welch interval of mean(different) −
mean(same) at every width ("above": every interval lies above 0). Preconditions: every model at
every width learns the task (ID accuracy at the ends of its paths, env A), and every aligned
checkpoint computes its source's function.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from weightlab.rebasin.barriers import loss_barrier
from weightlab.rebasin.design import pair_key, width_tag
from weightlab.verdicts import (
    EXPECTATION,
    OURS,
    PRECONDITION,
    Criterion,
    criteria_document,
    criterion,
    difference_interval,
    t_interval,
)

HYPOTHESIS = ("Weight matching connects same-mechanism models better as width grows, while spurious and robust models "
              "stay separated by a higher barrier at every width.")
LEARNS, EXACT = "models_learn_the_task_at_every_width", "alignment_preserves_function_at_every_width"


def sweep_rows(interpolations: Mapping[str, Mapping[str, Mapping[str, Any]]], kinds: Mapping[str, str], env: str) -> list[dict]:
    """One row per (multiplier, pair, method): the loss barrier on `env` and the ID accuracy of
    both ends (env A, from the naive path's endpoints). `interpolations`: multiplier -> pair key -> record."""
    rows = []
    for mult, pairs in interpolations.items():
        for key, record in pairs.items():
            for method in ("naive", "aligned"):
                curves = record[method]
                rows.append({"multiplier": float(mult), "pair": key, "kind": kinds[key], "method": method,
                             "loss_barrier": loss_barrier(curves[f"{env}_loss"]),
                             "end_accuracy": [curves["A_accuracy"][0], curves["A_accuracy"][-1]]})
    return rows


def group_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """multiplier -> 'same/aligned', ... -> {n, mean, ci95} of the loss barrier over pairs."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mult in sorted({r["multiplier"] for r in rows}):
        out[width_tag(mult)] = {}
        for kind in ("same", "different"):
            for method in ("naive", "aligned"):
                values = [r["loss_barrier"] for r in rows if r["multiplier"] == mult and r["kind"] == kind and r["method"] == method]
                mean, ci = t_interval(values)
                out[width_tag(mult)][f"{kind}/{method}"] = {"n": len(values), "mean": mean if values else None, "ci95": ci}
    return out


def slope_interval(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> tuple[float, list[float] | None]:
    """Least-squares slope of y on x and its Student-t interval (None with fewer than three points
    or a single x value)."""
    from scipy import stats

    if len(set(x)) < 2:
        return float("nan"), None
    fit = stats.linregress(x, y)
    if len(x) < 3:
        return float(fit.slope), None
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
    return float(fit.slope), [float(fit.slope - half), float(fit.slope + half)]


def width_criteria(rows: Sequence[Mapping[str, Any]], gaps: Mapping[str, Mapping[str, float | None]],
                   id_accuracy_min: float = 0.9, logit_gap_max: float = 1e-4) -> list[Criterion]:
    """Preconditions and the two expectations of the sweep. `gaps`: multiplier -> pair -> largest
    |logit difference| of its aligned checkpoint from the source (None: not recorded)."""
    ends = {}
    for r in rows:
        if r["method"] == "naive":
            ref, other = r["pair"].split("-")
            tag = width_tag(r["multiplier"])
            ends[f"{ref}@x{tag}"], ends[f"{other}@x{tag}"] = r["end_accuracy"]
    all_gaps = [v for pairs in gaps.values() for v in pairs.values()]
    recorded = bool(all_gaps) and all(v is not None for v in all_gaps)
    same = [r for r in rows if r["kind"] == "same" and r["method"] == "aligned"]
    x = [math.log2(r["multiplier"]) for r in same]
    slope, slope_ci = slope_interval(x, [r["loss_barrier"] for r in same])
    per_width = {}
    for mult in sorted({r["multiplier"] for r in rows}):
        def barriers(kind: str, m: float = mult) -> list[float]:
            return [r["loss_barrier"] for r in rows if r["multiplier"] == m and r["kind"] == kind and r["method"] == "aligned"]
        difference, ci = difference_interval(barriers("different"), barriers("same"))
        per_width[width_tag(mult)] = {"difference": difference, "ci95": ci}
    above = [w["ci95"][0] > 0 for w in per_width.values() if w["ci95"] is not None]
    complete = bool(per_width) and len(above) == len(per_width)  # no width at all: nothing was measured
    needs = (LEARNS, EXACT)
    return [
        criterion(LEARNS, f"every model at every width reaches ID accuracy (env A, ends of its paths) of at least {id_accuracy_min}",
                  OURS, PRECONDITION, f">= {id_accuracy_min} for every model", ends,
                  all(v >= id_accuracy_min for v in ends.values()) if ends else None),
        criterion(EXACT, "every aligned checkpoint at every width computes its source's function (largest |logit difference| "
                  "on 256 test images)", OURS, PRECONDITION, f"< {logit_gap_max} for every pair",
                  {m: dict(p) for m, p in gaps.items()}, all(v < logit_gap_max for v in all_gaps) if recorded else None,
                  "" if recorded else "an alignment record has no function check (re-run its alignment)"),
        criterion("same_mechanism_barrier_decreases_with_width",
                  "the same-mechanism aligned loss barrier decreases as width grows (least-squares slope of the pairs' barriers "
                  "against log2 of the width multiplier)", "issue 16 (after Ainsworth et al.: the barrier after weight matching "
                  "falls toward zero with width)", EXPECTATION, "95% interval of the slope below 0",
                  {"slope_per_doubling": slope, "pairs": len(same)}, None if slope_ci is None else slope_ci[1] < 0,
                  "verdict reads the interval" if slope_ci else "needs at least three same-mechanism barriers at two widths",
                  slope_ci, needs),
        criterion("different_mechanism_stays_above_at_every_width",
                  "at every width the different-mechanism aligned loss barrier is higher than the same-mechanism one",
                  "issue 16 (expected result 4 of the original at every width)", EXPECTATION,
                  "95% Welch interval of mean(different) − mean(same) above 0 at every width", per_width,
                  all(above) if complete else None,
                  "verdict reads the interval at every width" if complete else
                  "needs two same- and two different-mechanism pairs at every width for an interval", None, needs),
    ]


def sweep_document(interpolations: Mapping[str, Mapping[str, Mapping[str, Any]]],
                   alignments: Mapping[str, Mapping[str, Mapping[str, Any]]], kinds: Mapping[str, str], env: str,
                   models: Mapping[str, Mapping[str, Any]], id_accuracy_min: float = 0.9, logit_gap_max: float = 1e-4) -> dict[str, Any]:
    """width_sweep.json without its provenance: rows, the summary per width, the criteria and verdict."""
    rows = sweep_rows(interpolations, kinds, env)
    gaps = {m: {key: record.get("function_check", {}).get("max_abs_logit_difference") for key, record in pairs.items()}
            for m, pairs in alignments.items()}
    criteria = criteria_document("rebasin_width", HYPOTHESIS, width_criteria(rows, gaps, id_accuracy_min, logit_gap_max))
    return {"multipliers": sorted(float(m) for m in interpolations), "models": dict(models), "barrier_env": env,
            "rows": rows, "summary": group_summary(rows), **criteria}


def keyed_by_width(records: Sequence[Mapping[str, Any]], multipliers: Sequence[float], pairs_per_width: int) -> dict[str, dict[str, Any]]:
    """Records listed width by width (each width's pairs in order) as multiplier -> pair key -> record."""
    out: dict[str, dict[str, Any]] = {}
    for i, mult in enumerate(multipliers):
        chunk = records[i * pairs_per_width:(i + 1) * pairs_per_width]
        out[width_tag(mult)] = {pair_key(r["ref"], r["other"]): r for r in chunk}
    return out
