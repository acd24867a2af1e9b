"""Weight matching and interpolation paths between two models of the Re-Basin study.

Every point on a path, the endpoints included, has its BatchNorm statistics recomputed on the
same reset images, so the curve compares like with like.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from weightlab.rebasin.environments import EvalSets
from weightlab.rebasin.permutations import MatchResult, apply_permutation, weight_matching
from weightlab.rebasin.spurious import reliance_from_predictions
from weightlab.vision.data import to_float_batch
from weightlab.vision.training import evaluate, reset_batchnorm_stats


def interpolate_state(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * a + alpha * b for floating tensors, on a's device (b may live elsewhere, e.g.
    a checkpoint loaded on the CPU); integer buffers are taken from a."""
    return {
        name: torch.lerp(a, state_b[name].to(a.device), alpha) if a.is_floating_point() else a.clone()
        for name, a in state_a.items()
    }


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


ALIGNMENT_CHECK_IMAGES = 256  # test images on which an aligned checkpoint must compute its source's function


@torch.no_grad()
def function_gap(source: nn.Module, aligned: nn.Module, images: np.ndarray, device: torch.device | str = "cpu") -> float:
    """Largest |logit difference| between two models (eval mode, float32) on these images: 0 up to
    rounding when `aligned` is an exact permutation of `source`."""
    batch = to_float_batch(images, device)
    source.to(device).eval()
    aligned.to(device).eval()
    return float((source(batch) - aligned(batch)).abs().max())


@dataclass(frozen=True)
class PathPoint:
    alpha: float
    metrics: dict[str, float]


FORWARD_BATCH = 100  # images per forward pass when evaluating (changes no number; see vision.training.evaluate)


def evaluate_point(model: nn.Module, eval_sets: EvalSets, device: torch.device) -> dict[str, float]:
    """Loss and accuracy on every evaluation set, plus the SRS terms (needs sets A, none and cf).
    The sets' images may be uint8 arrays or their `to_float_batch` tensors (`prepared_sets`)."""
    metrics: dict[str, float] = {}
    predictions = {}
    for name, (images, labels) in eval_sets.items():
        result = evaluate(model, images, labels, device, forward_batch=FORWARD_BATCH)
        metrics[f"{name}_loss"], metrics[f"{name}_accuracy"] = result.loss, result.accuracy
        predictions[name] = result.predictions
    if {"A", "none", "cf"} <= set(predictions):
        reliance = reliance_from_predictions(eval_sets["A"][1], predictions["A"], predictions["none"], predictions["cf"])
        metrics.update({k: v for k, v in reliance.as_dict().items() if k not in ("id_accuracy",)})
    return metrics


def prepared_sets(eval_sets: EvalSets, device: torch.device) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """Every set's images converted to standardised float tensors once, for sets evaluated at
    many points (the conversion is elementwise, so the numbers are those of converting per batch)."""
    return {name: (to_float_batch(images, device), labels) for name, (images, labels) in eval_sets.items()}


def interpolation_paths(
    model: nn.Module,
    state_a: Mapping[str, torch.Tensor],
    others: Mapping[str, Mapping[str, torch.Tensor]],
    alphas: Sequence[float],
    eval_sets: EvalSets,
    reset_images: np.ndarray,
    device: torch.device,
    desc: str = "interpolate",
) -> dict[str, list[PathPoint]]:
    """Evaluate (1 - a) * A + a * B at every alpha for each B of `others` ({'naive': ...,
    'aligned': ...}), with BatchNorm statistics recomputed.

    At alpha 0 every path is A itself (lerp with weight 0 returns A exactly, and the reset images
    are the same), so that point is evaluated once and shared; the evaluation sets and reset
    images are converted to float once. The curves equal those of evaluating each path alone.
    """
    sets, reset = prepared_sets(eval_sets, device), to_float_batch(reset_images, device)
    shared: dict[float, PathPoint] = {}
    paths: dict[str, list[PathPoint]] = {}
    for name, state_b in others.items():
        points = []
        for alpha in tqdm(alphas, desc=f"{desc} {name}", file=sys.stderr, mininterval=5.0, ascii=True):
            alpha = float(alpha)
            if alpha == 0.0 and alpha in shared:
                points.append(shared[alpha])
                continue
            model.load_state_dict(interpolate_state(state_a, state_b, alpha))
            model.to(device)
            reset_batchnorm_stats(model, reset, device)
            points.append(PathPoint(alpha, evaluate_point(model, sets, device)))
            if alpha == 0.0:
                shared[alpha] = points[-1]
        paths[name] = points
    return paths


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
    return interpolation_paths(model, state_a, {"path": state_b}, alphas, eval_sets, reset_images, device, desc)["path"]


def path_curves(points: Sequence[PathPoint]) -> dict[str, list[float]]:
    """Column view of a path: {'alpha': [...], 'A_loss': [...], ...}."""
    curves: dict[str, list[float]] = {"alpha": [p.alpha for p in points]}
    for key in points[0].metrics:
        curves[key] = [p.metrics[key] for p in points]
    return curves



def mechanism_check(model: nn.Module, eval_sets: EvalSets, device: torch.device) -> dict[str, float]:
    """What a model relies on: accuracy on every environment, OOD and counterfactual drops, flip
    rate and SRS, with the in-distribution accuracy (env A) named as such."""
    metrics = evaluate_point(model, eval_sets, device)
    metrics["id_accuracy"] = metrics["A_accuracy"]
    return metrics
