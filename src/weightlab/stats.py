"""Small statistics every study's summaries share."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def _present(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def mean_of(values: Iterable[float | None], empty: Any = float("nan")) -> Any:
    """Mean of the values that are not None; `empty` when there are none."""
    present = _present(values)
    return float(np.mean(present)) if present else empty


def median_of(values: Iterable[float | None], empty: Any = float("nan")) -> Any:
    """Median of the values that are not None; `empty` when there are none."""
    present = _present(values)
    return float(np.median(present)) if present else empty
