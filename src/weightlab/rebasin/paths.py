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



def mechanism_check(model: nn.Module, eval_sets: EvalSets, device: torch.device) -> dict[str, float]:
    """What a model relies on: accuracy on every environment, OOD and counterfactual drops, flip
    rate and SRS, with the in-distribution accuracy (env A) named as such."""
    metrics = evaluate_point(model, eval_sets, device)
    metrics["id_accuracy"] = metrics["A_accuracy"]
    return metrics
