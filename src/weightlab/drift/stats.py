"""Small statistics of the drift study's preconditions. The comparison of safety groups with their
controls and the verdict live in `weightlab.drift.effects`, the power check in `weightlab.drift.power`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from weightlab.errors import InputError
from weightlab.stats import mean_interval


def paired_change(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """The mean per-item change after − before (e.g. each held-out example's loss) with its
    Student-t interval, and the relative change of the means."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 1:
        raise InputError(f"paired values need two equal-length vectors, got shapes {before.shape} and {after.shape}.")
    change = mean_interval((after - before).tolist(), confidence)
    key = f"ci{round(confidence * 100)}"
    return {"n": change["n"], "before": float(before.mean()), "after": float(after.mean()), "change": change["mean"],
            "ci": change[key], "relative_change": float((after.mean() - before.mean()) / before.mean()) if before.mean() else None,
            "confidence": confidence}
