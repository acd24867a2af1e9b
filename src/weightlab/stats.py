"""Small statistics every study's summaries share."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

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


def mean_interval(values: Iterable[float | None], confidence: float = 0.95) -> dict[str, Any]:
    """n, mean and the two-sided Student-t `confidence` interval of the mean of the values that
    are not None (interval None with fewer than two values, since it is undefined)."""
    from scipy import stats

    present = _present(values)
    n = len(present)
    mean = float(np.mean(present)) if present else float("nan")
    interval = None
    if n >= 2:
        spread = float(stats.sem(present))
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=spread) if spread > 0 else (mean, mean)
        interval = [float(low), float(high)]
    return {"n": n, "mean": mean, f"ci{round(confidence * 100)}": interval}


def cohens_d(first: Iterable[float], second: Iterable[float]) -> float:
    """Cohen's d = (mean₁ − mean₂) / pooled sample standard deviation (n − 1 in each group).

    One edge rule for every study: non-finite values are dropped; NaN when either group has
    fewer than two values (its sample variance is undefined); with zero pooled spread, 0 when
    the means are equal and ±inf when they differ (the limit of d as the spread shrinks)."""
    a = np.asarray(list(first), dtype=float)
    b = np.asarray(list(second), dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    difference = float(a.mean() - b.mean())
    if pooled == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / math.sqrt(pooled)


def bootstrap_interval(
    samples: Sequence[Iterable[float]], statistic: Callable[..., Any] = np.mean, n_resamples: int = 2000,
    confidence: float = 0.95, seed: int = 0, method: str = "percentile",
) -> list[float] | None:
    """Two-sided `confidence` interval of `statistic(*samples)` by `scipy.stats.bootstrap`: each
    sample resampled independently with a generator seeded by `seed`; `statistic` takes one array
    per sample and an `axis` keyword (vectorised, as np.mean does). None where the interval is
    undefined: a sample with fewer than two values, or an end that is not finite (a degenerate
    statistic). A sample whose values are all equal gives the statistic's value at both ends."""
    import warnings

    from scipy import stats

    arrays = tuple(np.asarray(list(s), dtype=float) for s in samples)
    if not arrays or any(a.size < 2 for a in arrays):
        return None
    if all(np.all(a == a[0]) for a in arrays):
        value = float(statistic(*arrays, axis=-1))
        return [value, value] if math.isfinite(value) else None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate resamples; the ends are checked below
        result = stats.bootstrap(arrays, statistic, n_resamples=n_resamples, confidence_level=confidence, method=method,
                                 paired=False, vectorized=True, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return [low, high] if math.isfinite(low) and math.isfinite(high) else None


def block_bootstrap_interval(
    samples: Sequence[Iterable[float]], statistic: Callable[..., float], block: int | None = None, n_resamples: int = 2000,
    confidence: float = 0.95, seed: int = 0, min_finite: float = 0.9,
) -> list[float] | None:
    """Two-sided percentile `confidence` interval of `statistic(*samples)` for paired samples
    that form one series in time (logged steps of one run), by the moving-block bootstrap (Künsch
    1989): each resample joins blocks of `block` consecutive points (the same indices in every
    sample) drawn with replacement from the n − block + 1 possible blocks, cut to n points. Neighbouring
    points of a smooth series are not independent; resampling single points (scipy's bootstrap)
    would treat them as if they were and give too narrow an interval. `block` defaults to
    round(n^(1/3)), the usual order for a percentile interval. Resamples on which `statistic` is not
    finite (a constant resample) are dropped; None when fewer than `min_finite` of them remain, with
    fewer than three points, or when the samples differ in length."""
    arrays = [np.asarray(list(s), dtype=float) for s in samples]
    n = arrays[0].size if arrays else 0
    if n < 3 or any(a.size != n for a in arrays):
        return None
    block = max(1, min(n, round(n ** (1 / 3)) if block is None else int(block)))
    rng = np.random.default_rng(seed)
    per_resample = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_resamples, per_resample))
    rows = (starts[:, :, None] + np.arange(block)).reshape(n_resamples, -1)[:, :n]
    values = np.array([statistic(*(a[r] for a in arrays)) for r in rows], dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size < min_finite * n_resamples:
        return None
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]
