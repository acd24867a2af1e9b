"""The drift study's norm-controlled, module-clustered comparisons and the planted-effect power
check, on constructed populations with known answers (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import default_settings
from weightlab.drift.effects import (
    Population,
    Thresholds,
    analyse_population,
    classify,
    cluster_weights,
    compare_group,
    matched_effect,
    norm_deciles,
    within_sd,
)
from weightlab.drift.power import planted_group, power_curve, shifted_population
from weightlab.drift.stats import paired_change
from weightlab.stats import cohens_d


def _thresholds(**changes):
    """The decision settings of config.yaml's drift.analysis block, with the test's changes."""
    return Thresholds.from_settings({**default_settings("drift", "analysis"), **changes})

THRESHOLDS = _thresholds(n_boot=400)


def population(n_modules: int = 40, per_module: int = 200, seed: int = 0, norm_slope: float = 0.0, module_sd: float = 0.0,
               noise: float = 1.0) -> Population:
    """log drift = module offset + norm_slope·log norm + noise, for every measure alike."""
    rng = np.random.default_rng(seed)
    module = np.repeat(np.arange(n_modules), per_module)
    norm = rng.lognormal(0.0, 0.4, len(module))
    offset = rng.normal(0, module_sd, n_modules)[module]
    value = np.exp(offset + norm_slope * np.log(norm) + rng.normal(0, noise, len(module)))
    return Population(module, norm, {"cosine_distance": value, "l2": value.copy(), "relative": value / norm})


def top_norm_group(pop: Population, k: int = 10, seed: int = 1) -> np.ndarray:
    """The k top-scoring neurons of each module by a SNIP-like score, norm × an independent
    factor: it favours large rows, but not only the very largest."""
    score = pop.norm * np.random.default_rng(seed).lognormal(0, 0.4, len(pop))
    mask = np.zeros(len(pop), dtype=bool)
    for m in np.unique(pop.module):
        where = np.flatnonzero(pop.module == m)
        mask[where[np.argsort(-score[where])[:k]]] = True
    return mask


def test_matched_effect_is_the_mean_difference_from_each_strata_control_mean():
    values = np.array([3.0, 1.0, 2.0, 10.0, 4.0, 6.0])
    in_group = np.array([True, False, False, True, False, False])
    stratum = np.array([0, 0, 0, 1, 1, 1])
    result = matched_effect(values, in_group, ~in_group, stratum, stratum, 2.0, np.ones((1, 2)))
    # stratum 0: 3 - 1.5 = 1.5; stratum 1: 10 - 5 = 5; mean over the two group neurons 3.25
    assert result["difference"] == pytest.approx(3.25) and result["d"] == pytest.approx(1.625)
    assert result["draws"][0] == pytest.approx(1.625) and result["n_group"] == 2 and result["unmatched"] == 0


def test_a_group_neuron_without_a_control_in_its_stratum_is_counted_not_compared():
    values = np.array([3.0, 1.0, 7.0])
    in_group = np.array([True, False, True])
    result = matched_effect(values, in_group, ~in_group, np.array([0, 0, 1]), np.array([0, 0, 1]), 1.0, np.ones((1, 2)))
    assert result["difference"] == pytest.approx(2.0) and result["unmatched"] == 1


def test_norm_deciles_split_each_module_by_rank():
    module = np.repeat([0, 1], 20)
    norm = np.concatenate([np.arange(20.0), -np.arange(20.0)])
    deciles = norm_deciles(module, norm)
    assert deciles[:20].tolist() == [i // 2 for i in range(20)]
    assert deciles[20:].tolist() == [9 - i // 2 for i in range(20)]


def test_within_sd_removes_module_offsets():
    rng = np.random.default_rng(1)
    module = np.repeat(np.arange(50), 400)
    values = rng.normal(0, 1, len(module)) + 10 * rng.normal(0, 1, 50)[module]
    assert within_sd(values, module) == pytest.approx(1.0, abs=0.02)
    assert values.std() > 5


def test_a_norm_confound_reads_h1_matched_on_module_only_and_vanishes_when_norm_is_controlled():
    pop = population(norm_slope=1.0, noise=1.0)
    group = top_norm_group(pop)
    result = compare_group(pop, group, ~group, "l2", THRESHOLDS, controls=("module", "module_norm", "module_norm_decile", "regression"))
    assert result["module"]["reading"] == "H1" and result["module"]["d"] > 0.4
    for control in ("module_norm", "module_norm_decile", "regression"):
        assert result[control]["reading"] == "no_differential_drift" and abs(result[control]["d"]) < 0.1, control
    assert result["regression"]["norm_slope"] == pytest.approx(1.0, abs=0.05)


def test_regression_recovers_a_planted_log_ratio_at_equal_norm():
    rng = np.random.default_rng(3)
    module = np.repeat(np.arange(30), 300)
    norm = rng.lognormal(0, 0.5, len(module))
    group = rng.random(len(module)) < 0.1
    log_drift = 0.5 * np.log(norm) + rng.normal(0, 1, 30)[module] + np.log(1.5) * group + rng.normal(0, 0.2, len(module))
    pop = Population(module, norm, {"l2": np.exp(log_drift)})
    result = compare_group(pop, group, ~group, "l2", THRESHOLDS, controls=("regression",))["regression"]
    assert result["beta"] == pytest.approx(np.log(1.5), abs=0.03) and result["norm_slope"] == pytest.approx(0.5, abs=0.03)
    assert result["ratio"] == pytest.approx(1.5, abs=0.05)


def test_cluster_bootstrap_is_wider_than_resampling_neurons_when_modules_differ():
    """Group neurons share a per-module deviation (mean 0): neurons are not independent draws,
    and only a bootstrap over modules sees it."""
    rng = np.random.default_rng(5)
    module = np.repeat(np.arange(30), 200)
    group = np.zeros(len(module), dtype=bool)
    group[np.concatenate([np.flatnonzero(module == m)[:20] for m in range(30)])] = True
    values = rng.normal(0, 1, len(module)) + np.where(group, rng.normal(0, 1.0, 30)[module], 0.0)
    pop = Population(module, np.ones(len(module)) + rng.random(len(module)), {"l2": values})
    clustered = compare_group(pop, group, ~group, "l2", THRESHOLDS, controls=("module",))["module"]["ci"]
    naive = neuron_bootstrap_d(values[group], values[~group], 400)
    assert clustered[1] - clustered[0] > 2 * (naive[1] - naive[0])


def neuron_bootstrap_d(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int = 0) -> list[float]:
    """The 95% interval of Cohen's d resampling neurons as independent draws (what the study did before)."""
    rng = np.random.default_rng(seed)
    ds = [cohens_d(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))]) for _ in range(n_boot)]
    return np.quantile(ds, [0.025, 0.975]).tolist()


def test_cluster_weights_resample_every_cluster_count():
    w = cluster_weights(7, 50, 0)
    assert w.shape == (50, 7) and np.all(w.sum(axis=1) == 7) and len({tuple(r) for r in w}) > 40


@pytest.mark.parametrize(("d", "ci", "eq", "reading"), [
    (0.6, [0.3, 0.9], [0.35, 0.85], "H1"),
    (0.15, [0.05, 0.25], [0.06, 0.24], "inconclusive"),  # differs from 0, but by less than the smallest effect of interest... not equivalent either
    (0.05, [-0.1, 0.2], [-0.08, 0.18], "no_differential_drift"),
    (0.05, [-0.3, 0.4], [-0.25, 0.35], "inconclusive"),
    (-0.4, [-0.6, -0.2], [-0.58, -0.22], "safety_drifts_less"),
    (float("nan"), None, None, "inconclusive"),
])
def test_classify(d, ci, eq, reading):
    assert classify(d, ci, eq, margin=0.2, h1_min_d=0.2) == reading


def test_analyse_population_reads_both_measures_against_the_norm_matched_control():
    pop = population(norm_slope=1.0, noise=1.0)
    snip = top_norm_group(pop)
    result = analyse_population(pop, {"snip_top": snip}, THRESHOLDS)
    assert result["primary_control"] == "module_norm" and result["readings"]["snip_top"].keys() == {"cosine", "l2"}
    assert result["reading_by_group"]["snip_top"] == "no_differential_drift" == result["reading"]
    moved = Population(pop.module, pop.norm, {k: np.where(snip, 2 * v, v) for k, v in pop.values.items()})
    assert analyse_population(moved, {"snip_top": snip}, THRESHOLDS)["reading"] == "H1"


def test_planted_group_has_the_requested_counts_among_eligible_neurons():
    module = np.repeat([0, 1, 2], 10)
    eligible = np.ones(30, dtype=bool)
    eligible[:5] = False
    mask = planted_group(module, {0: 3, 2: 4}, eligible, np.random.default_rng(0))
    assert mask[:10].sum() == 3 and not mask[:5].any() and mask[10:20].sum() == 0 and mask[20:].sum() == 4


def test_power_check_reads_h1_on_a_planted_shift_and_equivalence_at_zero():
    pop = population(norm_slope=1.0, module_sd=1.0)
    snip = top_norm_group(pop, 20)
    power = power_curve(pop, snip, ~snip, "l2", _thresholds(n_boot=200), shifts=(0.0, 0.3, 1.0), repeats=8)
    curve = {row["shift_d"]: row for row in power["curve"]}
    assert curve[1.0]["power_h1"] == 1.0 and curve[1.0]["mean_d"] == pytest.approx(1.0, abs=0.1)
    assert curve[0.0]["power_h1"] == 0.0 and power["equivalence_power_at_zero"] >= 0.75
    assert power["smallest_detectable_d"] in (0.3, 1.0)


def test_power_check_finds_nothing_detectable_when_the_run_is_too_noisy():
    pop = population(n_modules=6, per_module=30, noise=1.0)
    snip = top_norm_group(pop, 1)
    power = power_curve(pop, snip, ~snip, "l2", _thresholds(n_boot=200), shifts=(0.0, 0.2), repeats=5)
    assert power["smallest_detectable_d"] is None and power["equivalence_power_at_zero"] == 0.0


def test_paired_change_of_held_out_losses():
    before = np.array([3.0, 2.0, 4.0, 3.5])
    after = before - np.array([0.2, 0.1, 0.3, 0.2])
    change = paired_change(before, after)
    assert change["change"] == pytest.approx(-0.2) and change["ci"][1] < 0
    assert change["relative_change"] == pytest.approx(-0.2 / 3.125)


def test_a_planted_shift_moves_d_and_its_intervals_by_exactly_the_shift():
    """The shortcut of the power check: analysing the shifted population gives the unshifted
    result plus the shift (up to the tiny change of the population's SD)."""
    pop = population(norm_slope=1.0, module_sd=1.0)
    snip = top_norm_group(pop, 5)
    planted = planted_group(pop.module, {m: 5 for m in range(40)}, ~snip, np.random.default_rng(0))
    control = ~snip & ~planted
    base = compare_group(pop, planted, control, "l2", THRESHOLDS, controls=("module_norm",))["module_norm"]
    moved = compare_group(shifted_population(pop, planted, "l2", 0.5), planted, control, "l2", THRESHOLDS, controls=("module_norm",))["module_norm"]
    assert moved["d"] == pytest.approx(base["d"] + 0.5, abs=0.02)
    assert moved["ci"] == pytest.approx([base["ci"][0] + 0.5, base["ci"][1] + 0.5], abs=0.02)
