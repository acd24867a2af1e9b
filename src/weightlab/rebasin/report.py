"""The Re-Basin study's summary (every number in one place) and its hypothesis check."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from weightlab.rebasin.barriers import barrier_table
from weightlab.stats import mean_of

SUMMARY_METRICS = ("loss_barrier", "loss_barrier_mean_endpoint", "accuracy_barrier", "semantic_barrier")


def group_means(rows: Sequence[Mapping], metric: str) -> dict[str, float]:
    """Mean of `metric` for every (kind, method): {'same/aligned': ..., ...}."""
    out = {}
    for kind in ("same", "different"):
        for method in ("naive", "aligned"):
            values = [r[metric] for r in rows if r["kind"] == kind and r["method"] == method]
            out[f"{kind}/{method}"] = mean_of(values)
    return out


def hypothesis_report(barriers: Mapping, srs: Mapping[str, Mapping[str, float]]) -> dict:
    """Each of the study's expectations checked with its numbers, and whether all held."""
    rows = barrier_table(barriers)
    aligned = {kind: [r["loss_barrier"] for r in rows if r["kind"] == kind and r["method"] == "aligned"] for kind in ("same", "different")}
    semantic = {kind: [r["semantic_barrier"] for r in rows if r["kind"] == kind and r["method"] == "aligned"] for kind in ("same", "different")}
    same_pairs = [r for r in rows if r["kind"] == "same"]
    naive_same = {r["pair"]: r["loss_barrier"] for r in same_pairs if r["method"] == "naive"}
    aligned_same = {r["pair"]: r["loss_barrier"] for r in same_pairs if r["method"] == "aligned"}
    srs_a = {m: v["srs"] for m, v in srs.items() if m.startswith("A")}
    srs_r = {m: v["srs"] for m, v in srs.items() if m.startswith("R")}
    ood_a = {m: v["ood_drop"] for m, v in srs.items() if m.startswith("A")}
    ood_r = {m: v["ood_drop"] for m, v in srs.items() if m.startswith("R")}
    criteria = {
        "spurious_models_rely_more_on_patch": {
            "held": min(srs_a.values()) > max(srs_r.values()),
            "srs_spurious": srs_a, "srs_robust": srs_r, "ood_drop_spurious": ood_a, "ood_drop_robust": ood_r,
            "statement": "every A model has a higher SRS than every R model",
        },
        "alignment_lowers_same_mechanism_barriers": {
            "held": all(aligned_same[p] < naive_same[p] for p in naive_same),
            "naive": naive_same, "aligned": aligned_same,
            "statement": "for every same-mechanism pair the aligned loss barrier is below the naive one",
        },
        "different_mechanism_barriers_stay_higher": {
            "held": min(aligned["different"]) > max(aligned["same"]),
            "aligned_same": aligned["same"], "aligned_different": aligned["different"],
            "statement": "after alignment, every different-mechanism pair has a higher loss barrier than every same-mechanism pair",
        },
        "semantic_barrier_higher_for_different_mechanisms": {
            "held": mean_of(semantic["different"]) > mean_of(semantic["same"]),
            "aligned_same_mean": mean_of(semantic["same"]), "aligned_different_mean": mean_of(semantic["different"]),
            "statement": "after alignment, SRS deviates more from a straight line along different-mechanism paths (mean over pairs)",
        },
    }
    held = all(c["held"] for c in criteria.values())
    return {
        "hypothesis": (
            "Weight matching connects models that use the same mechanism but leaves a loss and a "
            "semantic barrier between a spurious and a robust model."
        ),
        "hypothesis_held": held,
        "criteria": criteria,
        "barrier_env": barriers["barrier_env"],
        "verdict": ("held" if held else "did not hold") + " on this run: " + ", ".join(
            f"{name}={'yes' if c['held'] else 'no'}" for name, c in criteria.items()
        ),
    }



def summary(
    barriers: Mapping[str, Any], srs: Mapping[str, Mapping[str, float]], histories: Mapping[str, Sequence[Mapping[str, Any]]],
    matches: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """summary.json without its provenance: SRS per model, last training epoch per model, the
    alignment of each pair, every barrier and their means per (kind, method)."""
    rows = barrier_table(barriers)
    return {
        "models": dict(srs),
        "final_training_epoch": {name: history[-1] for name, history in histories.items()},
        "alignment": {f"{m['ref']}-{m['other']}": {k: m[k] for k in ("iterations", "seconds", "fraction_units_moved")} for m in matches},
        "barriers": rows,
        "means": {metric: group_means(rows, metric) for metric in SUMMARY_METRICS},
    }

