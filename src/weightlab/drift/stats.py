"""Effect sizes of the drift comparison and the verdict on the two hypotheses.

Each safety group is compared with its module-matched random control (``random_matched:<group>``)
and with the plain random group, neuron by neuron, at the last logged step: Cohen's d with pooled
standard deviation, and a percentile bootstrap CI that resamples neurons within each group.

Direction: for every measure, the reported ``drift_d`` is signed so that a positive value means
the safety group drifted *more* (for cosine similarity, which falls as a row turns, d is negated).

Verdict on the primary measure against the matched control, with stated thresholds:

- **H1** (safety neurons drift more: fragile): drift_d >= `h1_min_d` and the CI excludes 0;
- **H2** (similar drift: safety lost through new pathways): |drift_d| < `h2_max_d` and the CI lies
  inside (−`h1_min_d`, `h1_min_d`), i.e. a medium effect either way is ruled out;
- ``safety_drifts_less``: drift_d <= −`h1_min_d` and the CI excludes 0;
- otherwise ``inconclusive``. The study's verdict is the safety groups' common verdict, or
  ``mixed`` when they differ.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.drift.design import DRIFT_SIGN, SAFETY_GROUPS
from weightlab.errors import InputError
from weightlab.stats import cohens_d, mean_interval


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _batched_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's d of each row pair of two (B, n) resample matrices."""
    na, nb = a.shape[1], b.shape[1]
    pooled = ((na - 1) * a.var(axis=1, ddof=1) + (nb - 1) * b.var(axis=1, ddof=1)) / (na + nb - 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a.mean(axis=1) - b.mean(axis=1)) / np.sqrt(pooled)


def bootstrap_d(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 2000, confidence: float = 0.95,
                seed: int = 0, chunk: int = 200) -> list[float] | None:
    """Percentile bootstrap CI of Cohen's d, resampling neurons within each group; None when a
    group has fewer than two values."""
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return None
    rng = np.random.default_rng(seed)
    ds = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        ds.append(_batched_d(a[rng.integers(0, len(a), (size, len(a)))], b[rng.integers(0, len(b), (size, len(b)))]))
    ds = np.concatenate(ds)
    ds = ds[np.isfinite(ds)]
    if not len(ds):
        return None
    tail = (1 - confidence) / 2
    return [float(np.quantile(ds, tail)), float(np.quantile(ds, 1 - tail))]


def compare(group: np.ndarray, control: np.ndarray, measure: str, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Cohen's d of group vs control on one measure, its bootstrap CI, both signed so that
    positive means the group drifted more (``drift_d``, ``drift_ci``), and the two means."""
    if measure not in DRIFT_SIGN:
        raise InputError(f"unknown drift measure '{measure}'; choose from {sorted(DRIFT_SIGN)}.")
    sign = DRIFT_SIGN[measure]
    d = cohens_d(group, control)
    ci = bootstrap_d(group, control, n_boot, confidence, seed)
    drift_ci = None if ci is None else sorted([sign * ci[0], sign * ci[1]])
    return {
        "measure": measure, "n_group": int(_finite(group).size), "n_control": int(_finite(control).size),
        "mean_group": float(np.mean(_finite(group))) if _finite(group).size else None,
        "mean_control": float(np.mean(_finite(control))) if _finite(control).size else None,
        "d": d, "ci": ci, "drift_d": sign * d, "drift_ci": drift_ci, "confidence": confidence,
    }


def classify(drift_d: float, drift_ci: Sequence[float] | None, h1_min_d: float = 0.5, h2_max_d: float = 0.2) -> str:
    """'H1', 'H2', 'safety_drifts_less' or 'inconclusive' (see the module docstring)."""
    if not 0 < h2_max_d <= h1_min_d:
        raise InputError(f"the thresholds need 0 < h2_max_d <= h1_min_d, got h2_max_d={h2_max_d}, h1_min_d={h1_min_d}.")
    if drift_ci is None or not np.isfinite(drift_d):
        return "inconclusive"
    low, high = drift_ci
    if drift_d >= h1_min_d and low > 0:
        return "H1"
    if drift_d <= -h1_min_d and high < 0:
        return "safety_drifts_less"
    if abs(drift_d) < h2_max_d and -h1_min_d < low and high < h1_min_d:
        return "H2"
    return "inconclusive"


def analyse(final: Mapping[str, Mapping[str, np.ndarray]], measures: Sequence[str] = ("cosine", "l2", "relative"),
            primary: str = "relative", h1_min_d: float = 0.5, h2_max_d: float = 0.2, n_boot: int = 2000,
            confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Every safety group against its matched control and the random group on every measure, the
    per-group verdicts on `primary` (against the matched control) and the study's verdict."""
    if primary not in measures:
        raise InputError(f"the primary measure '{primary}' is not among the measures {list(measures)}.")
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    verdicts: dict[str, str] = {}
    for k, group in enumerate(g for g in SAFETY_GROUPS if g in final):
        comparisons[group] = {}
        for control in (f"random_matched:{group}", "random"):
            if control not in final:
                continue
            comparisons[group][control] = {
                m: compare(final[group][m], final[control][m], m, n_boot, confidence, seed + 100 * k + j)
                for j, m in enumerate(measures)
            }
        matched = comparisons[group].get(f"random_matched:{group}")
        if matched is None:
            raise InputError(f"no matched control for '{group}' in the final drift; track random_matched during fine-tuning.")
        verdicts[group] = classify(matched[primary]["drift_d"], matched[primary]["drift_ci"], h1_min_d, h2_max_d)
    if not verdicts:
        raise InputError(f"the final drift has no safety group ({SAFETY_GROUPS}); check the neuron-group files.")
    overall = next(iter(verdicts.values())) if len(set(verdicts.values())) == 1 else "mixed"
    return {
        "primary_measure": primary, "thresholds": {"h1_min_d": h1_min_d, "h2_max_d": h2_max_d, "confidence": confidence, "n_boot": n_boot},
        "comparisons": comparisons, "verdict_by_group": verdicts, "verdict": overall,
    }


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
