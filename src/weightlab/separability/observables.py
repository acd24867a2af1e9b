"""Ψ, G, A and σ²: the observables every separability experiment logs, one definition each.

- Ψ (separability): `psi_accuracy`, or `psi_logit_diff` for IOI.
- G (routing plasticity): experiment A uses the original's definition, per head: 1 − Jensen–Shannon
  *distance* between a head's pattern on a fixed probe batch now and 500 steps earlier
  (`head_plasticity`, `PatternHistory`). Experiments B and C log `routing_plasticity`, ``1 − JSD``
  (the divergence, in bits) between consecutive logs averaged over rows and heads: it stays near 1
  (0.95–0.9997 in our runs) because a divergence is small where a distance is not.
- A (amplitude): `A_learned` = mean of the final LayerNorm scale (`a_learned`),
  `A_activation_L<i>` = mean residual-stream norm after layer i (`a_activation`), `A_param` =
  L2 (Frobenius) norm of all value projections (`a_param`).
- σ² (`sigma_sq_L<i>`): variance of the residual activations after centring them on their mean
  vector over the batch and positions (`sigma_sq`), the quantity the clamps act on. The original
  takes each token's spread across d_model instead (`sigma_sq_token_spread`; experiment A logs it
  as ``sigma_sq_token_L<i>`` beside ours).

`LogSchedule` decides when to log (dense early and while Ψ moves fast, sparse otherwise),
`aggregate_final` compares conditions over seeds (Cohen's d: `weightlab.stats.cohens_d`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from weightlab.stats import cohens_d


def psi_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the target (logits [..., classes], targets [...])."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    return float((logits.argmax(-1) == targets).float().mean())


def logit_diffs(final_logits: torch.Tensor, correct: torch.Tensor, incorrect: torch.Tensor) -> torch.Tensor:
    """Per-example logit(correct) − logit(incorrect) at the final position (final_logits [batch, vocab])."""
    rows = torch.arange(final_logits.shape[0], device=final_logits.device)
    return final_logits[rows, correct] - final_logits[rows, incorrect]


def psi_logit_diff(final_logits: torch.Tensor, correct: torch.Tensor, incorrect: torch.Tensor) -> float:
    """Mean logit difference, correct minus incorrect answer (IOI: indirect object minus subject)."""
    return float(logit_diffs(final_logits, correct, incorrect).mean())


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Jensen–Shannon divergence in bits between distributions along the last dimension, in [0, 1]."""
    p = p.double().clamp_min(0)
    q = q.double().clamp_min(0)
    p = p / p.sum(-1, keepdim=True).clamp_min(eps)
    q = q / q.sum(-1, keepdim=True).clamp_min(eps)
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        terms = torch.where(a > 0, a * (torch.log2(a.clamp_min(eps)) - torch.log2(b.clamp_min(eps))), torch.zeros_like(a))
        return terms.sum(-1)

    return (0.5 * kl(p, m) + 0.5 * kl(q, m)).clamp(0.0, 1.0)


def routing_plasticity(previous: torch.Tensor, current: torch.Tensor) -> float:
    """G = 1 − mean JSD between two attention patterns [..., query, key] (each row a distribution).

    Rows that are all zero in both (masked queries) are ignored. Identical patterns give 1."""
    if previous.shape != current.shape:
        raise ValueError(f"attention patterns differ in shape: {tuple(previous.shape)} vs {tuple(current.shape)}")
    jsd = js_divergence(previous, current)
    live = (previous.sum(-1) > 0) | (current.sum(-1) > 0)
    return float(1.0 - jsd[live].mean()) if bool(live.any()) else 1.0


def js_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon distance (the square root of the divergence in bits) along the last dimension,
    in [0, 1]: the metric scipy's ``jensenshannon`` returns (there with natural logs, in [0, √ln 2])."""
    return js_divergence(p, q).sqrt()


def head_plasticity(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """The original's G per head (``compute_geometry_jsd``): 1 − JS distance between a head's
    attention pattern now and at an earlier step, each taken as **one** distribution over all its
    (batch, query, key) entries. Patterns [batch, head, query, key] -> G [head], in [0, 1]; 1 means
    the routing did not move. (The original flattens the first probe sequence only and uses natural
    logs; here the whole probe batch and bits, so identical and disjoint patterns give 1 and 0.)"""
    if previous.shape != current.shape:
        raise ValueError(f"attention patterns differ in shape: {tuple(previous.shape)} vs {tuple(current.shape)}")
    flat = lambda x: x.detach().transpose(0, 1).reshape(x.shape[1], -1)  # noqa: E731 - [head, batch * q * k]
    return 1.0 - js_distance(flat(previous), flat(current))


@dataclass
class PatternHistory:
    """The attention patterns seen at logged steps, and the one G compares with: the latest pattern
    at least `window` steps old, else the oldest (the original's 500-step window and fallback)."""

    window: int = 500
    _seen: list[tuple[int, torch.Tensor]] = field(default_factory=list, repr=False)

    def reference(self, step: int) -> torch.Tensor | None:
        old = [pattern for seen, pattern in self._seen if step - seen >= self.window]
        return old[-1] if old else (self._seen[0][1] if self._seen else None)

    def add(self, step: int, pattern: torch.Tensor) -> None:
        self._seen.append((int(step), pattern.detach().clone()))


def a_learned(ln_final_scale: torch.Tensor | None) -> float | None:
    """Mean of the final LayerNorm scale; None for a model without one."""
    return None if ln_final_scale is None else float(ln_final_scale.detach().float().mean())


def _tokens(resid: torch.Tensor) -> torch.Tensor:
    return resid.detach().reshape(-1, resid.shape[-1]).double()


def a_activation(resid: torch.Tensor) -> float:
    """Mean L2 norm of the residual vectors [..., d_model] over every batch row and position."""
    return float(_tokens(resid).norm(dim=-1).mean())


def a_param(value_weights: Iterable[torch.Tensor]) -> float:
    """L2 (Frobenius) norm of all value projections together (W_V of every layer and head)."""
    return float(math.sqrt(sum(float(w.detach().double().pow(2).sum()) for w in value_weights)))


def sigma_sq(resid: torch.Tensor) -> float:
    """Variance of the residual activations after centring on their mean vector over tokens."""
    tokens = _tokens(resid)
    return float((tokens - tokens.mean(0, keepdim=True)).pow(2).mean())


def sigma_sq_token_spread(resid: torch.Tensor) -> float:
    """The original's σ² (``compute_variance``): each token's std across d_model, averaged over
    tokens, squared. It measures the spread *within* a token (what a LayerNorm fixes), where
    `sigma_sq` measures the spread of tokens about their mean vector (what the clamps act on)."""
    return float(_tokens(resid).std(dim=-1).mean() ** 2)


def layer_observables(resids: Sequence[torch.Tensor]) -> dict[str, float]:
    """A_activation_L<i> and sigma_sq_L<i> for the residual stream after each layer i."""
    values: dict[str, float] = {}
    for i, resid in enumerate(resids):
        values[f"A_activation_L{i}"] = a_activation(resid)
        values[f"sigma_sq_L{i}"] = sigma_sq(resid)
    return values


@dataclass
class LogSchedule:
    """When to log: every `dense_every` steps early (before `dense_until`) and while Ψ moves fast
    (it changed by more than `fast_change` since the previous log, or lies inside `band`), every
    `sparse_every` steps otherwise; always the first and the last step."""

    total_steps: int
    dense_every: int = 10
    sparse_every: int = 100
    dense_until: int = 200
    fast_change: float = 0.02
    band: tuple[float, float] | None = (0.15, 0.85)
    _last: float | None = field(default=None, repr=False)
    _fast: bool = field(default=False, repr=False)

    def due(self, step: int) -> bool:
        if step == 0 or step >= self.total_steps - 1:
            return True
        every = self.dense_every if (step < self.dense_until or self._fast) else self.sparse_every
        return step % max(1, every) == 0

    def observe(self, psi: float) -> None:
        """Tell the schedule the Ψ just logged, so it can densify around fast changes."""
        moved = self._last is not None and abs(psi - self._last) > self.fast_change
        inside = self.band is not None and self.band[0] < psi < self.band[1]
        self._fast = moved or inside
        self._last = psi


def aggregate_final(values: Mapping[str, Sequence[float]], pairs: Iterable[tuple[str, str]] = ()) -> dict:
    """Mean, sample std and n of each condition's per-seed values, and Cohen's d for `pairs`."""
    summary = {
        name: {
            "values": [float(v) for v in vals],
            "n": len(vals),
            "mean": float(np.mean(vals)) if len(vals) else float("nan"),
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
        }
        for name, vals in values.items()
    }
    d = {f"{a}_vs_{b}": cohens_d(values[a], values[b]) for a, b in pairs}
    return {"conditions": summary, "cohens_d": d}
