"""Experiment B's measures of self-repair and amplitude compensation (torch-free arithmetic on
what `weightlab.separability.ioi` records), and the choice of the random control heads.

- `recovered_fraction` (Rushing & Nanda 2024): the ablated heads' direct effect changes by ``D``
  (negative when they supported the answer); if nothing else changed the logit difference would
  change by ``D``. It changes by ``T``; the rest of the network recovered ``T − D`` of the ``−D``
  lost: ``(T − D) / (−D)`` (0: no self-repair, 1: full; undefined when |D| is below a floor). It
  never divides by a downstream sum, so it keeps its sign when the downstream heads' summed direct
  effect is negative (where after / before reads 0.19 while those heads rose by +1.58).
- `final_position_norm_ratio`: the original's amplitude measure — the residual-stream norm after
  ablation over before, per late layer, **at the final position** (the position that is read out),
  per prompt and averaged over the late layers; its mean over prompts with a bootstrap interval.
- `choose_random_heads`: the random control — `n` seeded random heads from all heads that are not
  name movers (not only low-attribution ones, which would make "no compensation" nearly true by
  construction).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def recovered_fraction(total_change: float, direct_change: float, floor: float = 1e-6) -> float | None:
    """(total − direct) / (−direct): the share of the ablated heads' lost direct effect that the rest
    of the network made up; None when |direct| < `floor` (nothing was lost to recover)."""
    if abs(direct_change) < floor:
        return None
    return (total_change - direct_change) / (-direct_change)


def final_position_norm_ratio(clean_norms: np.ndarray, ablated_norms: np.ndarray, late_layers: Sequence[int]) -> np.ndarray:
    """Per prompt, the mean over `late_layers` of ‖resid_post ablated‖ / ‖resid_post clean‖ at the
    final position (inputs [prompts, layers]); an empty array without late layers."""
    late = list(late_layers)
    if not late:
        return np.zeros(0)
    clean, ablated = np.asarray(clean_norms, dtype=float)[:, late], np.asarray(ablated_norms, dtype=float)[:, late]
    return (ablated / clean).mean(axis=1)


def mean_interval(values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Mean of per-prompt values with a seeded percentile bootstrap interval over prompts."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    if x.size == 1:
        return {"mean": float(x[0]), "ci95": None, "n": 1}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return {"mean": float(x.mean()), "ci95": [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))],
            "n": int(x.size), "method": f"percentile bootstrap over prompts, {n_resamples} resamples, seed {seed}"}


def choose_random_heads(n_layers: int, n_heads: int, excluded: Sequence[tuple[int, int]], n: int, seed: int) -> list[tuple[int, int]]:
    """`n` distinct (layer, head) drawn with a seeded generator from every head not in `excluded`,
    sorted by layer and head."""
    pool = [(layer, head) for layer in range(n_layers) for head in range(n_heads) if (layer, head) not in set(excluded)]
    if n < 1 or n > len(pool):
        raise ValueError(f"cannot draw {n} random heads from {len(pool)} heads that are not name movers")
    picks = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return sorted(pool[int(i)] for i in picks)
