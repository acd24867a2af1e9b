"""Re-Basin under spurious features: alignment, interpolation paths and barriers.

Barriers follow the study's definition, max_a L(a) - max(L(0), L(1)), with Ainsworth et al.'s
mean-endpoint variant beside it. Every point on a path, the endpoints included, has its
BatchNorm statistics recomputed on the same reset images, so the curve compares like with like.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from weightlab.data import ImageDataset, stratified_subset
from weightlab.permutations import MatchResult, apply_permutation, weight_matching
from weightlab.spurious import apply_patches, reliance_from_predictions
from weightlab.training import evaluate, reset_batchnorm_stats

EvalSets = Mapping[str, tuple[np.ndarray, np.ndarray]]


def model_names(groups: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """'A1', 'A2', 'R1', 'R2' for groups (A, R) and seeds (1, 2)."""
    return [f"{group}{seed}" for group in groups for seed in seeds]


def training_seed(model: str, global_seed: int, shared_seed: bool = True) -> int:
    """Seed of a model's initialisation and data order. With shared_seed, A_s and R_s share it
    (the original study's design); otherwise R models are offset by 500."""
    offset = 0 if shared_seed or group_of(model) == "A" else 500
    return 1000 * global_seed + int(model[1:]) + offset


def model_pairs(seeds: Sequence[int], mode: str = "matched") -> list[tuple[str, str, str]]:
    """(reference, other, kind) pairs: every same-mechanism pair within A and within R, and
    different-mechanism pairs A_s-R_s ('matched') or every A-R combination ('all')."""
    pairs = [(f"{g}{s}", f"{g}{t}", "same") for g in ("A", "R") for s, t in itertools.combinations(seeds, 2)]
    if mode == "matched":
        pairs += [(f"A{s}", f"R{s}", "different") for s in seeds]
    elif mode == "all":
        pairs += [(f"A{s}", f"R{t}", "different") for s in seeds for t in seeds]
    else:
        raise ValueError(f"unknown pair mode '{mode}'; choose matched or all.")
    return pairs


def interpolate_state(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * a + alpha * b for floating tensors; integer buffers are taken from a."""
    return {
        name: torch.lerp(a, state_b[name], alpha) if a.is_floating_point() else a.clone()
        for name, a in state_a.items()
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


def align(model_a: nn.Module, model_b: nn.Module, max_iter: int = 100, seed: int = 0) -> tuple[dict[str, torch.Tensor], MatchResult]:
    """B's state dict permuted into A's basis by weight matching, and the match itself."""
    spec = model_a.permutation_spec()
    state_b = model_b.state_dict()
    spec.check(state_b)
    trainable = {name for name, _ in model_a.named_parameters()}
    params_a = {k: v for k, v in model_a.state_dict().items() if k in trainable}
    params_b = {k: v for k, v in state_b.items() if k in trainable}
    match = weight_matching(spec, params_a, params_b, max_iter=max_iter, seed=seed)
    return apply_permutation(spec, match.perms, state_b), match


@dataclass(frozen=True)
class PathPoint:
    alpha: float
    metrics: dict[str, float]


def evaluate_point(model: nn.Module, eval_sets: EvalSets, device: torch.device) -> dict[str, float]:
    """Loss and accuracy on every evaluation set, plus the SRS terms (needs sets A, none and cf)."""
    metrics: dict[str, float] = {}
    predictions = {}
    for name, (images, labels) in eval_sets.items():
        result = evaluate(model, images, labels, device)
        metrics[f"{name}_loss"], metrics[f"{name}_accuracy"] = result.loss, result.accuracy
        predictions[name] = result.predictions
    if {"A", "none", "cf"} <= set(predictions):
        reliance = reliance_from_predictions(eval_sets["A"][1], predictions["A"], predictions["none"], predictions["cf"])
        metrics.update({k: v for k, v in reliance.as_dict().items() if k not in ("id_accuracy",)})
    return metrics


def interpolation_path(
    model: nn.Module,
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    alphas: Sequence[float],
    eval_sets: EvalSets,
    reset_images: np.ndarray,
    device: torch.device,
    desc: str = "interpolate",
) -> list[PathPoint]:
    """Evaluate (1 - a) * A + a * B at every alpha, with BatchNorm statistics recomputed."""
    points = []
    for alpha in tqdm(alphas, desc=desc, file=sys.stderr, mininterval=5.0, ascii=True):
        model.load_state_dict(interpolate_state(state_a, state_b, float(alpha)))
        model.to(device)
        reset_batchnorm_stats(model, reset_images, device)
        points.append(PathPoint(float(alpha), evaluate_point(model, eval_sets, device)))
    return points


def path_curves(points: Sequence[PathPoint]) -> dict[str, list[float]]:
    """Column view of a path: {'alpha': [...], 'A_loss': [...], ...}."""
    curves: dict[str, list[float]] = {"alpha": [p.alpha for p in points]}
    for key in points[0].metrics:
        curves[key] = [p.metrics[key] for p in points]
    return curves


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


# --- data of the study: which images each model trains on and is evaluated on -------------

TRAINING_ENV = {"A": "train_A", "R": "train_AB"}
EVAL_ENVS = {"A": "test_A", "B": "test_B", "none": "test_none", "cf": "test_cf"}


def group_of(model: str) -> str:
    if model[:1] not in TRAINING_ENV:
        raise ValueError(f"model name '{model}' must start with one of {sorted(TRAINING_ENV)}.")
    return model[0]


def environment_split(
    dataset: ImageDataset, colours: Mapping[str, np.ndarray], env_key: str, patch_size: int,
    indices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Patched images and labels of one environment split ('train_A', 'test_cf', ...)."""
    split = dataset.train if env_key.startswith("train") else dataset.test
    env_colours = colours[env_key]
    if indices is not None:
        split, env_colours = split.subset(indices), env_colours[indices]
    return apply_patches(split.images, env_colours, patch_size), split.labels


def training_set(dataset: ImageDataset, colours: Mapping[str, np.ndarray], model: str, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    return environment_split(dataset, colours, TRAINING_ENV[group_of(model)], patch_size)


def evaluation_sets(
    dataset: ImageDataset, colours: Mapping[str, np.ndarray], patch_size: int, size: int | None = None, seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Env A, env B, no-patch and counterfactual versions of the same test images."""
    indices = stratified_subset(dataset.test.labels, size, seed)
    return {name: environment_split(dataset, colours, key, patch_size, indices) for name, key in EVAL_ENVS.items()}


def reset_images(
    dataset: ImageDataset, colours: Mapping[str, np.ndarray], models: Sequence[str], patch_size: int, size: int, seed: int,
) -> np.ndarray:
    """Training images for BatchNorm resets, drawn equally from the endpoints' training environments."""
    envs = sorted({TRAINING_ENV[group_of(m)] for m in models})
    rng = np.random.default_rng(seed)
    parts = []
    for env in envs:
        indices = np.sort(rng.choice(len(dataset.train), size=min(len(dataset.train), size // len(envs)), replace=False))
        parts.append(environment_split(dataset, colours, env, patch_size, indices)[0])
    return np.concatenate(parts)


# --- results of the study: barriers per pair, summary, and the hypothesis check ------------

EVAL_NAMES = ("A", "B", "none")


def pair_key(ref: str, other: str) -> str:
    return f"{ref}-{other}"


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


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


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


def group_means(rows: Sequence[Mapping], metric: str) -> dict[str, float]:
    """Mean of `metric` for every (kind, method): {'same/aligned': ..., ...}."""
    out = {}
    for kind in ("same", "different"):
        for method in ("naive", "aligned"):
            values = [r[metric] for r in rows if r["kind"] == kind and r["method"] == method]
            out[f"{kind}/{method}"] = _mean(values)
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
            "held": _mean(semantic["different"]) > _mean(semantic["same"]),
            "aligned_same_mean": _mean(semantic["same"]), "aligned_different_mean": _mean(semantic["different"]),
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
