"""Repairing a model: solve the LP for one layer of its classifier, apply the change, check it.

`repair_model` is the whole step for one edit set: the inputs that reach the classifier, the LP
(weightlab.repair.lp) and its solve (weightlab.repair.solvers), the repaired copy, and a plain
float32 check of margins and ReLU patterns on the edit points.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from weightlab.repair.lp import build_repair_lp, relu_patterns, split_head
from weightlab.repair.solvers import SolveResult, solve
from weightlab.vision.data import to_float_batch

PATTERN_TOLERANCE = 1e-5  # |pre-activation| below this counts as on the ReLU's kink when checking


@dataclass(frozen=True)
class RepairSettings:
    """What the repair of one edit set is asked to do: the `repair.lp` block of the config (its
    defaults live in config.yaml and the schema) and the solver's threads (the rule's)."""

    layer: str
    margin: float
    param_bound: float
    solver: str
    objective: str
    time_limit: float | None
    threads: int


@dataclass
class RepairResult:
    successful: bool
    reason: str  # empty when successful
    layer: str
    solve: SolveResult
    num_vars: int
    num_constraints: int
    delta_weight: np.ndarray | None = None
    delta_bias: np.ndarray | None = None
    build_seconds: float = 0.0

    @property
    def linf(self) -> float | None:
        if self.delta_weight is None:
            return None
        return float(max(np.abs(self.delta_weight).max(initial=0.0), np.abs(self.delta_bias).max(initial=0.0)))

    @property
    def l1(self) -> float | None:
        if self.delta_weight is None:
            return None
        return float(np.abs(self.delta_weight).sum() + np.abs(self.delta_bias).sum())


def failure_reason(result: SolveResult, n: int, layer: str, margin: float, param_bound: float) -> str:
    if result.status in ("Infeasible", "Infeasible or unbounded"):
        return (f"LP infeasible ({result.solver}: {result.status}): no change of at most {param_bound} per parameter "
                f"of layer {layer} gives all {n} edit points a margin of {margin}")
    if result.message:
        return result.message
    return f"{result.solver} stopped with status '{result.status}' after {result.seconds:.1f} s"


def repair_head(
    head: nn.Sequential, layer: str, head_inputs: torch.Tensor, labels: np.ndarray, margin: float,
    param_bound: float, solver: str = "auto", threads: int = 1, time_limit: float | None = None,
    objective: str = "linf+l1_normalized",
) -> RepairResult:
    """Solve the repair LP for one layer of `head`; an infeasible or failed solve is a result."""
    started = time.perf_counter()
    split = split_head(head, layer, head_inputs)
    lp = build_repair_lp(split, np.asarray(labels, dtype=np.int64), margin, param_bound, objective)
    build_seconds = time.perf_counter() - started
    result = solve(lp, solver, threads, time_limit)
    repair = RepairResult(False, "", split.layer_name, result, lp.num_vars, lp.num_constraints, build_seconds=build_seconds)
    if not result.optimal:
        repair.reason = failure_reason(result, len(labels), split.layer_name, margin, param_bound)
        return repair
    weight_shape = tuple(split.layer.weight.shape)
    num_weights = int(np.prod(weight_shape))
    repair.delta_weight = result.x[:num_weights].reshape(weight_shape)
    repair.delta_bias = result.x[num_weights:lp.num_params]
    repair.successful = True
    return repair


def apply_repair(model: nn.Module, repair: RepairResult) -> nn.Module:
    """A copy of `model` with the repaired layer's parameters changed (float32)."""
    repaired = copy.deepcopy(model)
    layer = getattr(repaired.classifier, repair.layer)
    with torch.no_grad():
        layer.weight += torch.from_numpy(repair.delta_weight).to(layer.weight)
        layer.bias += torch.from_numpy(repair.delta_bias).to(layer.bias)
    return repaired


@torch.no_grad()
def head_inputs(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 500) -> torch.Tensor:
    """What enters `model.classifier` for each image (float32, eval mode, on the CPU)."""
    captured: list[torch.Tensor] = []
    hook = model.classifier.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().cpu()))
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(to_float_batch(images[start:start + batch_size], device))
    finally:
        hook.remove()
    return torch.cat(captured) if captured else torch.zeros(0)


@dataclass(frozen=True)
class EditCheck:
    accuracy: float
    min_margin: float  # smallest logit[y] - max_{c != y} logit[c] over the edit points
    pattern_flips: int  # downstream ReLU units whose side changed (|z| > tolerance in both)


@torch.no_grad()
def check_edit_points(
    original_head: nn.Sequential, repaired_head: nn.Sequential, layer: str, inputs: torch.Tensor, labels: np.ndarray,
) -> EditCheck:
    """Plain float32 forward pass: accuracy, margin and ReLU-pattern changes on the edit points."""
    inputs = inputs.float()
    logits = repaired_head.eval()(inputs).double().numpy()
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return EditCheck(float("nan"), float("nan"), 0)
    true = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    before = relu_patterns(split_head(original_head, layer, inputs))
    after = relu_patterns(split_head(repaired_head, layer, inputs))
    flips = sum(
        int(((np.sign(a) != np.sign(b)) & (np.abs(a) > PATTERN_TOLERANCE) & (np.abs(b) > PATTERN_TOLERANCE)).sum())
        for a, b in zip(before, after)
    )
    return EditCheck(float((logits.argmax(1) == labels).mean()), float((true - others.max(1)).min()), flips)


@torch.no_grad()
def full_net_margins(model: nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device | str = "cpu",
                     batch_size: int = 500) -> np.ndarray:
    """logit[y] − max_{c≠y} logit[c] of each image by a plain float32 forward pass of the whole
    network (eval mode): every layer recomputed, nothing taken from the LP."""
    model.eval()
    margins = []
    for start in range(0, len(images), batch_size):
        logits = model(to_float_batch(images[start:start + batch_size], device)).double().cpu().numpy()
        y = np.asarray(labels[start:start + batch_size], dtype=np.int64)
        true = logits[np.arange(len(y)), y]
        logits[np.arange(len(y)), y] = -np.inf
        margins.append(true - logits.max(1))
    return np.concatenate(margins) if margins else np.zeros(0)


def repair_model(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, settings: RepairSettings,
) -> tuple[RepairResult, nn.Module | None, EditCheck | None]:
    """Repair a CPU copy of `model` on these images: the result, the repaired copy (None when the
    LP failed) and the float32 check of the edit points on it."""
    model = copy.deepcopy(model).cpu().eval()
    inputs = head_inputs(model, images)
    result = repair_head(
        model.classifier, settings.layer, inputs, labels, settings.margin, settings.param_bound,
        settings.solver, settings.threads, settings.time_limit, settings.objective,
    )
    if not result.successful:
        return result, None, None
    repaired = apply_repair(model, result)
    return result, repaired, check_edit_points(model.classifier, repaired.classifier, result.layer, inputs, labels)
