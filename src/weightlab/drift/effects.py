"""Safety groups against norm-controlled, module-clustered controls, and the verdict.

The input is the drift of **every** neuron of the trained modules at the last step (a
`Population`: each neuron's module, initial row norm and drift measures) and a safety group
(a boolean mask over it). SNIP picks rows by Σ|W|·|∇W|, which favours rows of large norm, and a
row's drift depends on its norm and on its module; so a safety group is compared with the other
neurons of the same modules three ways (all reported):

- ``module``: a control matched on module (every neuron of the module in neither safety group);
- ``module_norm``: a control matched on module **and** row norm, the primary comparison: each
  safety neuron against the 4 neurons of its module with the nearest norms. (Matching on the
  norm decile within the module, ``module_norm_decile``, is available but too coarse for a
  group in the top percent: the top decile spans a wide range of norms, and in a constructed
  population with drift rising with norm it keeps about 40% of the confound);
- ``regression``: log drift regressed on log row norm with one intercept per module and a
  safety-group indicator; the indicator's coefficient (log of the drift ratio at equal norm and
  module).

Effect sizes share one scale per measure so the three can be read side by side and against one
margin: d = (difference) / σ, with σ the pooled within-module standard deviation of the measure
over the whole population (of log drift for the regression). The difference of a matched
comparison is the mean over the group's neurons of (its value − its stratum's control mean).

Intervals come from a **cluster bootstrap over modules** (modules resampled with replacement,
each carrying all its neurons): neurons of one module share its drift, so they are not
independent draws. Every statistic is a ratio of per-module sums, so a resample is one matrix
product of module multiplicities with per-module sums.

Verdict per measure (`classify`), with the smallest effect of interest `margin` (|d| = 0.2, a
small effect):

- ``H1`` (safety neurons drift more): d ≥ margin and the `confidence` interval lies above 0;
- ``no_differential_drift`` (equivalence by two one-sided tests at level `alpha`): the
  (1 − 2·alpha) interval lies inside (−margin, margin);
- ``safety_drifts_less``: d ≤ −margin and the interval lies below 0;
- otherwise ``inconclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.config import settings_dataclass
from weightlab.errors import InputError

CONTROLS = ("module_norm", "module", "regression")  # primary first; "module_norm_decile" on request
VERDICT_MEASURES = ("cosine", "l2")  # the original's measures: the verdict reads these
SECONDARY_MEASURES = ("relative",)
MEASURE_VALUES = {"cosine": "cosine_distance", "l2": "l2", "relative": "relative"}  # larger = more drift
VERDICTS = ("H1", "no_differential_drift", "safety_drifts_less", "inconclusive")
N_DECILES = 10


@dataclass(frozen=True)
class Population:
    """Every trained neuron: its module (index), initial row norm and drift measures."""

    module: np.ndarray  # int, one per neuron
    norm: np.ndarray
    values: Mapping[str, np.ndarray]  # measure name (a key of MEASURE_VALUES' values) -> per neuron

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> "Population":
        """From `DriftTracker.population` (or its saved form): module_index, norm and measures."""
        module = np.asarray(arrays["module_index"], dtype=np.int64)
        values = {k: np.asarray(arrays[k], dtype=np.float64) for k in ("cosine", "cosine_distance", "l2", "relative") if k in arrays}
        return cls(module, np.asarray(arrays["norm"], dtype=np.float64), values)

    def __len__(self) -> int:
        return len(self.module)

    def measure(self, name: str) -> np.ndarray:
        key = MEASURE_VALUES.get(name, name)
        if key not in self.values:
            raise InputError(f"the population has no measure '{key}'; it has {sorted(self.values)}.")
        return self.values[key]


def norm_deciles(module: np.ndarray, norm: np.ndarray, n_bins: int = N_DECILES) -> np.ndarray:
    """Each neuron's norm decile (0..n_bins-1) among the neurons of its module (by rank, ties by
    position, so every module's bins are as equal in size as its count allows)."""
    module, norm = np.asarray(module), np.asarray(norm)
    out = np.zeros(len(module), dtype=np.int64)
    for m in np.unique(module):
        where = np.flatnonzero(module == m)
        ranks = np.empty(len(where), dtype=np.int64)
        ranks[np.argsort(norm[where], kind="stable")] = np.arange(len(where))
        out[where] = ranks * n_bins // len(where)
    return out


def within_sd(values: np.ndarray, module: np.ndarray) -> float:
    """Pooled within-module standard deviation of the finite values."""
    keep = np.isfinite(values)
    values, module = values[keep], module[keep]
    _, inverse = np.unique(module, return_inverse=True)
    n = np.bincount(inverse)
    means = np.bincount(inverse, values) / np.maximum(n, 1)
    ss = float(np.sum((values - means[inverse]) ** 2))
    df = int(len(values) - len(n))
    return float(np.sqrt(ss / df)) if df > 0 else float("nan")


def cluster_weights(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) multiplicities of a cluster bootstrap: each row a resample of the
    clusters with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot).astype(np.float64)


def _interval(draws: np.ndarray, confidence: float) -> list[float] | None:
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return None
    tail = (1 - confidence) / 2
    return [float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))]


def matched_effect(values: np.ndarray, in_group: np.ndarray, is_control: np.ndarray, stratum: np.ndarray, cluster: np.ndarray,
                   scale: float, weights: np.ndarray) -> dict[str, Any]:
    """The group's mean difference from its stratum-matched controls, in units of `scale`, and
    its cluster-bootstrap draws (`weights`: multiplicities per cluster, see `cluster_weights`;
    clusters are 0..n-1 and every stratum lies in one cluster).

    difference = Σ_s n_gs·(ḡ_s − c̄_s) / Σ_s n_gs over the strata that hold both group and control
    neurons; group neurons in strata without a control are counted in ``unmatched``."""
    keep = np.isfinite(values) & (in_group | is_control)
    v, g, s, c = values[keep], in_group[keep], stratum[keep], cluster[keep]
    strata, inverse = np.unique(s, return_inverse=True)
    n_g = np.bincount(inverse, g.astype(float), len(strata))
    n_c = np.bincount(inverse, (~g).astype(float), len(strata))
    sum_g = np.bincount(inverse, np.where(g, v, 0.0), len(strata))
    sum_c = np.bincount(inverse, np.where(g, 0.0, v), len(strata))
    both = (n_g > 0) & (n_c > 0)
    contribution = np.where(both, sum_g - n_g * sum_c / np.where(n_c > 0, n_c, 1), 0.0)
    counted = np.where(both, n_g, 0.0)
    stratum_cluster = np.zeros(len(strata), dtype=np.int64)
    stratum_cluster[inverse] = c
    n_clusters = weights.shape[1]
    a = np.bincount(stratum_cluster, contribution, n_clusters)
    n = np.bincount(stratum_cluster, counted, n_clusters)
    difference = a.sum() / n.sum() if n.sum() > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = (weights @ a) / (weights @ n) / scale
    return {"difference": float(difference), "d": float(difference / scale), "draws": draws,
            "n_group": int(counted.sum()), "unmatched": int(n_g[~both].sum()), "n_control": int(n_c[both].sum()),
            "mean_group": float(sum_g[both].sum() / n_g[both].sum()) if counted.sum() else None,
            "mean_control_matched": float(np.sum(n_g[both] * sum_c[both] / n_c[both]) / n_g[both].sum()) if counted.sum() else None}


def nearest_norm_effect(values: np.ndarray, norm: np.ndarray, in_group: np.ndarray, is_control: np.ndarray, cluster: np.ndarray,
                        scale: float, weights: np.ndarray, k: int = 4) -> dict[str, Any]:
    """The group's mean difference from controls matched on module and row norm: each group
    neuron against the mean of the `k` control neurons of its module (cluster) whose norms are
    nearest to its own (on a log scale), in units of `scale`, with cluster-bootstrap draws."""
    keep = np.isfinite(values) & (norm > 0)
    n_clusters = weights.shape[1]
    a = np.zeros(n_clusters)
    n = np.zeros(n_clusters)
    sum_group = sum_control = 0.0
    unmatched = 0
    log_norm = np.log(np.where(norm > 0, norm, 1.0))
    order = np.argsort(cluster, kind="stable")
    bounds = np.searchsorted(cluster[order], np.arange(n_clusters + 1))
    for m in np.unique(cluster[keep & in_group]):
        here = order[bounds[m]:bounds[m + 1]]
        here = here[keep[here]]
        group_idx = here[in_group[here]]
        control_idx = here[is_control[here] & ~in_group[here]]
        if len(control_idx) < k:
            unmatched += len(group_idx)
            continue
        by_norm = control_idx[np.argsort(log_norm[control_idx], kind="stable")]
        sorted_log = log_norm[by_norm]
        target = log_norm[group_idx]
        pos = np.searchsorted(sorted_log, target)
        window = np.clip(pos[:, None] + np.arange(-k, k)[None, :], 0, len(by_norm) - 1)
        distance = np.abs(sorted_log[window] - target[:, None])
        distance[:, 1:][window[:, 1:] == window[:, :-1]] = np.inf  # a clipped window repeats its edge: count it once
        nearest = np.take_along_axis(window, np.argsort(distance, axis=1, kind="stable")[:, :k], axis=1)
        control_mean = values[by_norm][nearest].mean(axis=1)
        a[m] = float(np.sum(values[group_idx] - control_mean))
        n[m] = len(group_idx)
        sum_group += float(values[group_idx].sum())
        sum_control += float(control_mean.sum())
    difference = a.sum() / n.sum() if n.sum() > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = (weights @ a) / (weights @ n) / scale
    return {"difference": float(difference), "d": float(difference / scale), "draws": draws, "n_group": int(n.sum()),
            "unmatched": unmatched, "k": k, "mean_group": sum_group / n.sum() if n.sum() else None,
            "mean_control_matched": sum_control / n.sum() if n.sum() else None}


def regression_effect(values: np.ndarray, norm: np.ndarray, in_group: np.ndarray, is_control: np.ndarray, cluster: np.ndarray,
                      weights: np.ndarray, scale: float) -> dict[str, Any]:
    """log(value) = a_module + b·log(norm) + beta·[in group] + e over the group and control
    neurons: beta (the log drift ratio at equal norm and module), beta / `scale` as d, and its
    cluster-bootstrap draws. Neurons with a non-positive value or norm are left out (counted)."""
    keep = (in_group | is_control) & np.isfinite(values) & (values > 0) & (norm > 0)
    y, x, g, c = np.log(values[keep]), np.log(norm[keep]), in_group[keep].astype(float), cluster[keep]
    k = weights.shape[1]
    sums = {name: np.bincount(c, arr, k) for name, arr in
            {"1": np.ones_like(y), "x": x, "g": g, "y": y, "xx": x * x, "xg": x * g, "gg": g * g, "xy": x * y, "gy": g * y}.items()}
    n = np.where(sums["1"] > 0, sums["1"], 1)
    # per-cluster within-cluster (demeaned) cross products
    sxx = sums["xx"] - sums["x"] ** 2 / n
    sxg = sums["xg"] - sums["x"] * sums["g"] / n
    sgg = sums["gg"] - sums["g"] ** 2 / n
    sxy = sums["xy"] - sums["x"] * sums["y"] / n
    sgy = sums["gy"] - sums["g"] * sums["y"] / n

    def solve(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a11, a12, a22, b1, b2 = w @ sxx, w @ sxg, w @ sgg, w @ sxy, w @ sgy
        det = a11 * a22 - a12 * a12
        with np.errstate(invalid="ignore", divide="ignore"):
            return (a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det

    slope, beta = solve(np.ones((1, k)))
    _, draws = solve(weights)
    return {"beta": float(beta[0]), "ratio": float(np.exp(beta[0])), "norm_slope": float(slope[0]), "d": float(beta[0] / scale),
            "draws": draws / scale, "n_group": int(g.sum()), "n_control": int(len(g) - g.sum()), "left_out": int((~keep & (in_group | is_control)).sum())}


def classify(d: float, ci: Sequence[float] | None, equivalence_ci: Sequence[float] | None, margin: float = 0.2,
             h1_min_d: float = 0.2) -> str:
    """'H1', 'no_differential_drift', 'safety_drifts_less' or 'inconclusive' (module docstring)."""
    if not 0 < margin:
        raise InputError(f"the equivalence margin must be positive, got {margin}.")
    if ci is None or equivalence_ci is None or not np.isfinite(d):
        return "inconclusive"
    if d >= h1_min_d and ci[0] > 0:
        return "H1"
    if d <= -h1_min_d and ci[1] < 0:
        return "safety_drifts_less"
    if -margin < equivalence_ci[0] and equivalence_ci[1] < margin:
        return "no_differential_drift"
    return "inconclusive"


@dataclass(frozen=True)
class Thresholds:
    """The decision's settings: the ``drift.analysis`` block (its defaults live in config.yaml
    and the schema)."""

    margin: float  # |d| below this is no differential drift (a small effect)
    h1_min_d: float  # H1 needs at least this d, with its interval above 0
    confidence: float
    alpha: float  # equivalence by two one-sided tests: the (1 - 2 alpha) interval inside ±margin
    n_boot: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift.analysis") -> "Thresholds":
        """The decision's fields of a config block (other keys are ignored; a missing one is an
        error naming `key`)."""
        fields = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        return settings_dataclass(cls, fields, key, margin=float, h1_min_d=float, confidence=float, alpha=float, n_boot=int)


def compare_group(population: Population, in_group: np.ndarray, is_control: np.ndarray, measure: str, thresholds: Thresholds,
                  seed: int = 0, controls: Sequence[str] = CONTROLS, deciles: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """One safety group (mask `in_group`) against the controls (mask `is_control`: neurons in no
    safety group) on one measure: per control, d, its interval, the equivalence interval and the
    reading (`classify`)."""
    values = population.measure(measure)
    module = population.module
    _, cluster = np.unique(module, return_inverse=True)
    n_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    weights = cluster_weights(n_clusters, thresholds.n_boot, seed)
    out: dict[str, dict[str, Any]] = {}
    for control in controls:
        if control == "regression":
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = within_sd(np.log(np.where(values > 0, values, np.nan)), module)
            result = regression_effect(values, population.norm, in_group, is_control, cluster, weights, scale)
        elif control == "module_norm":
            scale = within_sd(values, module)
            result = nearest_norm_effect(values, population.norm, in_group, is_control, cluster, scale, weights)
        elif control in ("module", "module_norm_decile"):
            scale = within_sd(values, module)
            if control == "module":
                stratum = module
            else:
                deciles = norm_deciles(module, population.norm) if deciles is None else deciles
                stratum = module * N_DECILES + deciles
            result = matched_effect(values, in_group, is_control, stratum, cluster, scale, weights)
        else:
            raise InputError(f"unknown control '{control}'; choose from {CONTROLS}.")
        draws = result.pop("draws")
        ci = _interval(draws, thresholds.confidence)
        equivalence = _interval(draws, 1 - 2 * thresholds.alpha)
        out[control] = {**result, "measure": measure, "scale": scale, "ci": ci, "equivalence_ci": equivalence,
                        "reading": classify(result["d"], ci, equivalence, thresholds.margin, thresholds.h1_min_d)}
    return out


def common(readings: Sequence[str]) -> str:
    """The common reading, or 'mixed'."""
    return readings[0] if readings and len(set(readings)) == 1 else "mixed"


def analyse_population(population: Population, groups: Mapping[str, np.ndarray], thresholds: Thresholds, seed: int = 0,
                       measures: Sequence[str] = (*VERDICT_MEASURES, *SECONDARY_MEASURES),
                       verdict_measures: Sequence[str] = VERDICT_MEASURES) -> dict[str, Any]:
    """Every safety group (name -> mask over the population) on every measure against the three
    controls; control neurons are those in no safety group. Per group, the reading of each
    verdict measure (cosine and L2 for rows; L2 for single weights, which have no cosine) against
    the primary control and their common reading."""
    if not groups:
        raise InputError("no safety group to analyse.")
    is_control = ~np.any(np.stack([np.asarray(m, dtype=bool) for m in groups.values()]), axis=0)
    deciles = norm_deciles(population.module, population.norm)
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    readings: dict[str, dict[str, str]] = {}
    for k, (name, mask) in enumerate(groups.items()):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise InputError(f"safety group '{name}' has no neuron in the trained modules.")
        comparisons[name] = {m: compare_group(population, mask, is_control, m, thresholds, seed + 100 * k + j, deciles=deciles)
                             for j, m in enumerate(measures)}
        readings[name] = {m: comparisons[name][m][CONTROLS[0]]["reading"] for m in verdict_measures if m in measures}
    by_group = {g: common(list(r.values())) for g, r in readings.items()}
    return {"comparisons": comparisons, "readings": readings, "reading_by_group": by_group, "reading": common(list(by_group.values())),
            "primary_control": CONTROLS[0], "verdict_measures": list(verdict_measures),
            "thresholds": {**thresholds.__dict__, "equivalence_interval": 1 - 2 * thresholds.alpha}}
