"""Experiment A's clamps: forward hooks that fix amplitude and variance (naive) or variance only
(mean-preserving), their calibration on the trained control, and the record of what they did.

Sites. The original applies its clamp **after the final LayerNorm** ("so layernorm doesn't undo the
clamp", ``exp_a_foundation.py``): a clamp on the residual stream before a LayerNorm is undone by it
(one factor for every token is divided out again), so the naive clamp there is a no-op. Here the
site is a hook name: ``ln_final.hook_out`` (the final LayerNorm's output, after its scale and bias:
the original's site) or an attention output ``blocks.<i>.hook_attn_out``, where the clamp fixes the
amplitude of what the heads write relative to the rest of the residual stream (the embeddings),
which the following LayerNorm does not undo. The targets are the trained control's statistics at the
calibration hook (by default the clamp's own site).

Every clamp keeps the factor it applied on its last call (`Clamp.last_factor`): the naive clamp's
``target_norm / mean token norm``, the mean-preserving clamp's ``healthy_std / centred std``. A clamp
whose factors stay at 1 does nothing; `factor_summary` says how far they were from 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from weightlab.errors import InputError

CLAMP_KINDS = {"naive_clamp": "naive", "mean_preserving_clamp": "mean_preserving"}  # condition -> kind
FINAL_NORM_SITE = "ln_final.hook_out"
_EPS = 1e-8

Hook = tuple[str, Callable[..., torch.Tensor]]


def mean_token_norm(resid: torch.Tensor) -> torch.Tensor:
    """Mean L2 norm of the residual vectors over all tokens (a scalar tensor, differentiable)."""
    return resid.reshape(-1, resid.shape[-1]).norm(dim=-1).mean()


def centred_std(resid: torch.Tensor) -> torch.Tensor:
    """Std (n − 1) of all entries after centring the tokens on their mean vector (scalar tensor)."""
    flat = resid.reshape(-1, resid.shape[-1])
    return (flat - flat.mean(0, keepdim=True)).std()


def naive_clamp(resid: torch.Tensor, target_norm: float) -> torch.Tensor:
    """Rescale the whole residual by one factor so its mean token norm is `target_norm`: the mean
    vector (amplitude) and the spread (variance) shrink or grow together."""
    return resid * (target_norm / mean_token_norm(resid).clamp_min(_EPS))


def mean_preserving_clamp(resid: torch.Tensor, healthy_std: float) -> torch.Tensor:
    """Keep the mean vector over tokens, rescale the centred part to std `healthy_std`: the variance
    is fixed, the mean shift (amplitude) is left free."""
    flat = resid.reshape(-1, resid.shape[-1])
    mean = flat.mean(0, keepdim=True)
    centred = flat - mean
    return (mean + centred * (healthy_std / centred.std().clamp_min(_EPS))).reshape(resid.shape)


@dataclass
class Clamp:
    """A named clamp as a forward hook: ``(clamp.hook, clamp)`` in ``fwd_hooks``. `last_factor` is
    the scale factor its last call applied (to the whole tensor, or to its centred part)."""

    kind: str  # 'naive' or 'mean_preserving'
    hook: str
    target: float  # target_norm (naive) or healthy_std (mean_preserving)
    last_factor: float | None = field(default=None, compare=False, repr=False)

    def factor(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind == "naive":
            return self.target / mean_token_norm(resid).clamp_min(_EPS)
        return self.target / centred_std(resid).clamp_min(_EPS)

    def __call__(self, resid: torch.Tensor, hook: Any = None) -> torch.Tensor:
        self.last_factor = float(self.factor(resid).detach())
        if self.kind == "naive":
            return naive_clamp(resid, self.target)
        return mean_preserving_clamp(resid, self.target)

    def fwd_hook(self) -> Hook:
        return (self.hook, self)

    def describe(self) -> dict[str, Any]:
        key = "target_norm" if self.kind == "naive" else "healthy_std"
        return {"kind": self.kind, "hook": self.hook, key: self.target}


def clamp_for(condition: str, calibration: Mapping[str, Any] | None, hook: str | None = None) -> Clamp | None:
    """The clamp of a condition (None for control and constraint), from the control's calibration,
    applied at `hook` (default: the hook it was calibrated on)."""
    if condition not in CLAMP_KINDS:
        return None
    if not calibration:
        raise InputError(f"condition {condition} needs the clamp calibration of the trained control "
                         "(its audit log's summary.calibration); run the control of the same seed first.")
    kind = CLAMP_KINDS[condition]
    return Clamp(kind, hook or calibration.get("clamp_hook") or calibration["hook"],
                 float(calibration["target_norm" if kind == "naive" else "healthy_std"]))


@torch.no_grad()
def calibrate_clamps(model: Any, inputs: torch.Tensor, hook: str, batch_size: int, max_batches: int) -> dict[str, Any]:
    """The clamps' targets from a (trained, unclamped) model: the mean over batches of the mean token
    norm (`target_norm`) and of the centred std (`healthy_std`) at `hook`, as the original's
    ClampCalibrator computes them."""
    norms, stds = [], []
    for start in range(0, min(len(inputs), batch_size * max_batches), batch_size):
        _, cache = model.run_with_cache(inputs[start:start + batch_size], names_filter=hook)
        if hook not in cache:
            raise InputError(f"clamp hook {hook!r} is not a hook point of the model; use e.g. {FINAL_NORM_SITE} "
                             "or blocks.0.hook_attn_out.")
        norms.append(float(mean_token_norm(cache[hook])))
        stds.append(float(centred_std(cache[hook])))
    return {"hook": hook, "target_norm": sum(norms) / len(norms), "healthy_std": sum(stds) / len(stds), "batches": len(norms)}


def calibration_from_control(control_log: Mapping[str, Any], seed: int, hook: str, where: str = "control log") -> dict[str, Any]:
    """The clamp calibration stored by the trained control of the same seed, checked (`hook`: the
    calibration hook the condition expects)."""
    summary = control_log.get("summary", {})
    calibration = summary.get("calibration")
    if not isinstance(calibration, Mapping) or not {"hook", "target_norm", "healthy_std"} <= set(calibration):
        raise InputError(f"{where} has no summary.calibration {{hook, target_norm, healthy_std}}; re-run the control of experiment A.")
    if control_log.get("metadata", {}).get("seed") != seed:
        raise InputError(f"{where} is for seed {control_log.get('metadata', {}).get('seed')}, not {seed}; "
                         "clamps are calibrated on the control of the same seed.")
    if calibration["hook"] != hook:
        raise InputError(f"{where} calibrated the clamp at {calibration['hook']!r} but clamp_hook / calibration_hook "
                         f"is {hook!r}; re-run the control.")
    for key in ("target_norm", "healthy_std"):
        value = calibration[key]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InputError(f"{where}: calibration {key}={value!r} is not a positive number; re-run the control.")
    return dict(calibration)


def factor_summary(factors: Sequence[float], min_effect: float) -> dict[str, Any]:
    """How much a clamp did over a run, from its per-step scale factors: min, median, max, the median
    of |log factor| and the fraction of steps whose factor is more than `min_effect` away from 1
    (relative: |log f| > log(1 + min_effect)). ``acts`` — the precondition "the clamp changes what it
    clamps" — holds when the median step's factor is that far from 1."""
    if not len(factors):
        return {"n_steps": 0, "acts": None}
    f = np.asarray(factors, dtype=float)
    log_f = np.abs(np.log(np.clip(f, 1e-12, None)))
    bound = math.log1p(min_effect)
    return {
        "n_steps": int(f.size), "min": float(f.min()), "median": float(np.median(f)), "max": float(f.max()),
        "median_abs_log": float(np.median(log_f)), "fraction_acting": float((log_f > bound).mean()),
        "min_effect": float(min_effect), "acts": bool(np.median(log_f) > bound),
    }
