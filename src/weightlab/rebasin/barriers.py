"""Barriers along interpolation paths, per pair, as in results/barriers.json.

The loss barrier follows the study's definition, max_a L(a) - max(L(0), L(1)), with Ainsworth
et al.'s mean-endpoint variant beside it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.rebasin.design import pair_key

EVAL_NAMES = ("A", "B", "none")
DEFINITIONS = {
    "loss_barrier": "max_a L(a) - max(L(0), L(1))",
    "loss_barrier_mean_endpoint": "max_a L(a) - (L(0) + L(1)) / 2 (Ainsworth et al.)",
    "accuracy_barrier": "min(acc(0), acc(1)) - min_a acc(a)",
    "semantic_barrier": "max_a |SRS(a) - ((1 - a) SRS(0) + a SRS(1))|",
}


def loss_barrier(losses: Sequence[float]) -> float:
    """max_a L(a) - max(L(0), L(1)): how far the path rises above the worse endpoint."""
    return float(max(losses) - max(losses[0], losses[-1]))


def mean_endpoint_loss_barrier(losses: Sequence[float]) -> float:
    """max_a L(a) - (L(0) + L(1)) / 2, the variant Ainsworth et al. report."""
    return float(max(losses) - 0.5 * (losses[0] + losses[-1]))


def accuracy_barrier(accuracies: Sequence[float]) -> float:
    """min(acc(0), acc(1)) - min_a acc(a): how far the path dips below the worse endpoint."""
    return float(min(accuracies[0], accuracies[-1]) - min(accuracies))


def semantic_barrier(alphas: Sequence[float], srs: Sequence[float]) -> float:
    """Largest deviation of SRS along the path from the straight line between its endpoints."""
    alphas_arr, srs_arr = np.asarray(alphas, dtype=float), np.asarray(srs, dtype=float)
    line = (1 - alphas_arr) * srs_arr[0] + alphas_arr * srs_arr[-1]
    return float(np.max(np.abs(srs_arr - line)))


def barriers_of(curves: Mapping[str, Sequence[float]], env: str) -> dict[str, float]:
    """Loss (both variants), accuracy and semantic barriers of one path on one environment."""
    result = {
        "loss_barrier": loss_barrier(curves[f"{env}_loss"]),
        "loss_barrier_mean_endpoint": mean_endpoint_loss_barrier(curves[f"{env}_loss"]),
        "accuracy_barrier": accuracy_barrier(curves[f"{env}_accuracy"]),
    }
    if "srs" in curves:
        result["semantic_barrier"] = semantic_barrier(curves["alpha"], curves["srs"])
        result["srs_range"] = float(max(curves["srs"]) - min(curves["srs"]))
    return result


def pair_record(interpolation: Mapping, kind: str, barrier_env: str) -> dict:
    """One pair of barriers.json: curves and barriers, naive and aligned, headline on barrier_env."""
    record: dict = {"ref": interpolation["ref"], "other": interpolation["other"], "kind": kind}
    for method in ("naive", "aligned"):
        curves = interpolation[method]
        per_env = {env: barriers_of(curves, env) for env in EVAL_NAMES if f"{env}_loss" in curves}
        headline = per_env[barrier_env]
        record[method] = {
            "loss": curves[f"{barrier_env}_loss"],
            "accuracy": curves[f"{barrier_env}_accuracy"],
            "srs": curves.get("srs"),
            "loss_barrier": headline["loss_barrier"],
            "loss_barrier_mean_endpoint": headline["loss_barrier_mean_endpoint"],
            "accuracy_barrier": headline["accuracy_barrier"],
            "semantic_barrier": headline.get("semantic_barrier"),
            "barriers_by_env": per_env,
            "curves": curves,
        }
    return record


def barrier_table(barriers: Mapping) -> list[dict]:
    """Flat rows (pair, kind, method, barriers) for summaries and figures."""
    rows = []
    for key, pair in barriers["pairs"].items():
        for method in ("naive", "aligned"):
            entry = pair[method]
            rows.append({
                "pair": key, "kind": pair["kind"], "method": method,
                "loss_barrier": entry["loss_barrier"],
                "loss_barrier_mean_endpoint": entry["loss_barrier_mean_endpoint"],
                "accuracy_barrier": entry["accuracy_barrier"],
                "semantic_barrier": entry["semantic_barrier"],
            })
    return rows



def barriers_document(interpolations: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, str], barrier_env: str) -> dict[str, Any]:
    """barriers.json without its provenance: every pair's record (keyed 'A1-A2', from its
    interpolation file) and the definitions. `kinds` maps each pair key to 'same' or 'different'."""
    missing = sorted(set(kinds) - set(interpolations))
    if missing:
        raise ValueError(f"no interpolation results for pairs {missing}.")
    pairs = {}
    for key, kind in kinds.items():
        interpolation = interpolations[key]
        if pair_key(interpolation["ref"], interpolation["other"]) != key:
            raise ValueError(f"the interpolation given for pair {key} is of {interpolation['ref']}-{interpolation['other']}.")
        pairs[key] = pair_record(interpolation, kind, barrier_env)
    return {"barrier_env": barrier_env, "definitions": DEFINITIONS, "pairs": pairs}
