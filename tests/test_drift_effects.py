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
    common,
    compare_group,
    matched_effect,
    nearest_norm_effect,
    norm_deciles,
    regression_effect,
    within_sd,
)
from weightlab.drift.power import planted_group, power_curve, shifted_population
from weightlab.drift.stats import paired_change
from weightlab.errors import InputError
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


@pytest.mark.filterwarnings("error")  # 0/0 of a resample without group neurons is silenced, nothing else warns
def test_matched_effect_whole_record_by_hand():
    """Strata: s0 (group 3; controls 1, 2; a NaN control and a neuron in neither set, both left
    out), s1 (group 10; controls 4, 6), s2 (a group neuron without control: unmatched), s3 (a
    control without group neuron); cluster 3 holds only a neuron in neither set."""
    values = np.array([3.0, 1.0, 2.0, np.nan, 7.0, 10.0, 4.0, 6.0, 5.0, 8.0, 9.0])
    in_group = np.array([1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
    is_control = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)
    stratum = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 4])
    cluster = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 3])
    weights = np.array([[1.0, 1, 1, 1], [0, 2, 0, 0], [2, 0, 1, 1], [0, 0, 3, 1]])
    result = matched_effect(values, in_group, is_control, stratum, cluster, 2.0, weights)
    draws = result.pop("draws")
    # s0: 3 - 1.5 = 1.5; s1: 10 - 5 = 5; the resample [0, 2, 0, 0] sees s1 only; [0, 0, 3, 1] no group neuron
    assert draws[:3] == pytest.approx([3.25 / 2, 5 / 2, 1.5 / 2]) and np.isnan(draws[3])
    assert result == pytest.approx({"difference": 3.25, "d": 1.625, "n_group": 2, "unmatched": 1, "n_control": 4,
                                    "mean_group": 6.5, "mean_control_matched": 3.25})


@pytest.mark.filterwarnings("error")  # 0/0 of a resample without group neurons is silenced, nothing else warns
def test_matched_effect_without_a_matched_group_neuron_is_nan_not_a_number_by_accident():
    values = np.array([3.0, 1.0, 5.0])
    in_group = np.array([True, False, True])
    result = matched_effect(values, in_group, ~in_group, np.array([0, 1, 2]), np.array([0, 1, 2]), 1.0, np.ones((2, 3)))
    assert np.isnan(result.pop("difference")) and np.isnan(result.pop("d")) and np.isnan(result.pop("draws")).all()
    assert result == {"n_group": 0, "unmatched": 2, "n_control": 0, "mean_group": None, "mean_control_matched": None}


def _nearest_norm_case():
    """(values, norm, in_group, is_control, cluster) of five modules, k = 2 (see the test)."""
    rows = [  # (cluster, norm, value, group, control)
        (0, 0.01, 1.0, 0, 1), (0, 0.02, 2.0, 0, 1), (0, 0.04, 3.0, 0, 1), (0, 0.08, 4.0, 0, 1),
        (0, 0.16, 10.0, 1, 0), (0, 0.015, 2.0, 1, 0), (0, 0.005, 1.5, 1, 0), (0, 0.017, 50.0, 0, 0),
        (1, 1.0, 3.0, 1, 0), (1, 1.0, 1.0, 0, 1),
        (2, 2.0, 1.0, 0, 1), (2, 4.0, 3.0, 0, 1), (2, 1.0, 5.0, 1, 0), (2, 3.0, np.nan, 0, 1), (2, 0.0, 100.0, 0, 1),
        (3, 1.0, 1.0, 1, 0), (3, 2.0, 1.0, 1, 0),
        (4, 1.0, 1.0, 0, 1),
    ]
    cluster, norm, values, group, control = (np.array(c) for c in zip(*rows))
    return values.astype(float), norm.astype(float), group.astype(bool), control.astype(bool), cluster.astype(np.int64)


@pytest.mark.filterwarnings("error")  # 0/0 of a resample without group neurons is silenced, nothing else warns
def test_nearest_norm_effect_whole_record_by_hand():
    """k = 2. Module 0 (norms below 1): group neurons above all controls (nearest 0.08, 0.04:
    10 - 3.5), between (0.015: nearest 0.02, 0.01: 2 - 1.5) and below all (0.005: 1.5 - 1.5); a
    neuron of another group at 0.017 is no control. Module 1: one control, fewer than k:
    unmatched. Module 2: exactly k usable controls (a NaN one and one of norm 0 are left out):
    5 - mean(1, 3). Module 3: two group neurons, no control: unmatched. Module 4: controls only."""
    values, norm, group, control, cluster = _nearest_norm_case()
    weights = np.array([[1.0, 1, 1, 1, 1], [0, 1, 0, 1, 1], [2, 0, 1, 0, 0]])
    result = nearest_norm_effect(values, norm, group, control, cluster, 0.5, weights, k=2)
    draws = result.pop("draws")
    # module 0: a = 6.5 + 0.5 + 0 = 7 over 3 neurons; module 2: a = 3 over 1
    assert draws[0] == pytest.approx(10 / 4 / 0.5) and np.isnan(draws[1]) and draws[2] == pytest.approx(17 / 7 / 0.5)
    assert result == pytest.approx({"difference": 2.5, "d": 5.0, "n_group": 4, "unmatched": 3, "k": 2,
                                    "mean_group": (13.5 + 5) / 4, "mean_control_matched": (6.5 + 2) / 4})


@pytest.mark.filterwarnings("error")  # 0/0 of a resample without group neurons is silenced, nothing else warns
def test_nearest_norm_effect_of_a_single_neuron_and_of_none():
    values, norm, group, control, cluster = _nearest_norm_case()
    only = group & (cluster == 2)
    one = nearest_norm_effect(values, norm, only, control, cluster, 1.0, np.ones((1, 5)), k=2)
    assert one["difference"] == pytest.approx(3.0) and one["n_group"] == 1 and one["unmatched"] == 0
    none = nearest_norm_effect(values, norm, group & (cluster == 3), control, cluster, 1.0, np.ones((1, 5)), k=2)
    assert np.isnan(none["difference"]) and none["unmatched"] == 2 and none["mean_group"] is None and none["mean_control_matched"] is None


def _least_squares(y: np.ndarray, x: np.ndarray, g: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """(slope, beta) of y on x, g and one intercept per cluster, by numpy's least squares."""
    dummies = (cluster[:, None] == np.unique(cluster)[None, :]).astype(float)
    return np.linalg.lstsq(np.column_stack([x, g, dummies]), y, rcond=None)[0][:2]


@pytest.mark.filterwarnings("error")  # 0/0 of a resample without group neurons is silenced, nothing else warns
def test_regression_effect_whole_record_against_least_squares():
    """Module 0 and 1: group and control neurons, one of each left out (value 0, norm 0);
    module 2: every neuron left out (NaN, negative value); module 3: neurons in neither set."""
    rows = [  # (cluster, norm, value, group, control)
        (0, 0.5, 0.20, 1, 0), (0, 1.0, 0.30, 0, 1), (0, 2.0, 0.90, 1, 0), (0, 4.0, 0.70, 0, 1), (0, 3.0, 0.40, 0, 1), (0, 1.5, 0.0, 1, 0),
        (1, 0.8, 2.0, 0, 1), (1, 1.6, 5.0, 1, 0), (1, 3.2, 4.0, 0, 1), (1, 0.4, 1.5, 1, 0), (1, 2.4, 3.0, 0, 1), (1, 0.0, 2.0, 0, 1),
        (2, 1.0, np.nan, 0, 1), (2, 2.0, -1.0, 1, 0),
        (3, 1.0, 2.0, 0, 0), (3, 2.0, 7.0, 0, 0),
    ]
    cluster, norm, values, group, control = (np.array(c) for c in zip(*rows))
    cluster, group, control, norm, values = cluster.astype(np.int64), group.astype(bool), control.astype(bool), norm.astype(float), values.astype(float)
    weights = np.array([[1.0, 1, 1, 1], [2, 0, 0, 0], [0, 0, 1, 1]])
    result = regression_effect(values, norm, group, control, cluster, weights, 0.5)
    used = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    slope, beta = _least_squares(np.log(values[used]), np.log(norm[used]), group[used].astype(float), cluster[used])
    alone = used & (cluster == 0)
    beta_0 = _least_squares(np.log(values[alone]), np.log(norm[alone]), group[alone].astype(float), cluster[alone])[1]
    draws = result.pop("draws")
    assert draws[:2] == pytest.approx([beta / 0.5, beta_0 / 0.5], rel=1e-9) and np.isnan(draws[2])
    assert result == pytest.approx({"beta": beta, "ratio": np.exp(beta), "norm_slope": slope, "d": beta / 0.5,
                                    "n_group": 4, "n_control": 6, "left_out": 4}, rel=1e-9)


@pytest.mark.parametrize(("d", "ci", "eq", "reading"), [
    (0.6, [0.3, 0.9], None, "inconclusive"),  # no equivalence interval: no reading at all
    (0.05, None, [-0.1, 0.1], "inconclusive"),  # no interval
    (0.25, [0.1, 0.4], [0.12, 0.38], "H1"),  # d exactly at h1_min_d
    (0.6, [-0.1, 0.9], [-0.05, 0.85], "inconclusive"),  # the interval reaches below 0
    (0.6, [0.0, 0.9], [0.05, 0.85], "inconclusive"),  # ... or touches it
    (-0.25, [-0.4, -0.1], [-0.38, -0.12], "safety_drifts_less"),  # d exactly at -h1_min_d
    (-0.1, [-0.3, -0.02], [-0.28, -0.05], "inconclusive"),  # below 0 but small, and not equivalent
    (-0.1, [-0.15, -0.02], [-0.12, -0.05], "no_differential_drift"),  # below 0, small and equivalent
    (-0.5, [-0.8, 0.0], [-0.75, -0.05], "inconclusive"),  # the interval touches 0
    (-0.5, [-0.8, 0.3], [-0.7, 0.2], "inconclusive"),
    (0.0, [-0.25, 0.15], [-0.25, 0.1], "inconclusive"),  # the equivalence interval reaches -margin
    (0.0, [-0.1, 0.25], [-0.1, 0.25], "inconclusive"),  # ... or +margin
])
def test_classify_at_its_boundaries(d, ci, eq, reading):
    assert classify(d, ci, eq, margin=0.25, h1_min_d=0.25) == reading


def test_classify_defaults_are_a_small_effect_and_a_margin_must_be_positive():
    assert classify(0.5, [0.3, 0.7], [0.35, 0.65]) == "H1"  # h1_min_d 0.2
    assert classify(0.1, [-0.5, 0.6], [-0.5, 0.5]) == "inconclusive"  # margin 0.2
    assert classify(0.0, [-0.2, 0.2], [-0.19, 0.19]) == "no_differential_drift"
    with pytest.raises(InputError, match="positive"):
        classify(0.0, [-0.1, 0.1], [-0.1, 0.1], margin=0.0)


def test_thresholds_convert_their_fields_and_name_the_block_of_a_missing_one():
    settings = {"margin": "0.3", "h1_min_d": "0.4", "confidence": "0.9", "alpha": "0.1", "n_boot": "50", "power_repeats": 20}
    thresholds = Thresholds.from_settings(settings)
    assert thresholds == Thresholds(margin=0.3, h1_min_d=0.4, confidence=0.9, alpha=0.1, n_boot=50)
    assert [type(v) for v in thresholds.__dict__.values()] == [float, float, float, float, int]
    with pytest.raises(InputError, match=r"drift\.analysis: missing keys \['alpha'\]"):
        Thresholds.from_settings({k: v for k, v in settings.items() if k != "alpha"})


def test_within_sd_by_hand():
    module = np.array([0, 0, 1, 2, 2, 2])
    values = np.array([1.0, 3.0, 10.0, 4.0, np.nan, 6.0])  # the NaN is left out; module 1's one neuron adds nothing
    assert within_sd(values, module) == pytest.approx(np.sqrt(4.0 / 2))  # (1 + 1 + 1 + 1) / (5 - 3)
    assert within_sd(np.array([1.0, 3.0, 10.0]), np.array([0, 0, 1])) == pytest.approx(np.sqrt(2.0))  # one degree of freedom
    assert np.isnan(within_sd(np.array([1.0, 3.0]), np.array([0, 1])))  # none


def test_norm_deciles_of_interleaved_modules_break_ties_by_position():
    module = np.tile([0, 1, 2], 30)
    tied = np.tile([1.0, 0.0], 45)[:90]  # module 2: norms 1, 0, 1, 0, ... (fifteen of each)
    norm = np.where(module == 0, np.arange(90.0), np.where(module == 1, -np.arange(90.0), tied))
    deciles = norm_deciles(module, norm)
    assert deciles[module == 0].tolist() == [i // 3 for i in range(30)]
    assert deciles[module == 1].tolist() == [9 - i // 3 for i in range(30)]
    ranks = [15 + i // 2 if norm[module == 2][i] == 1.0 else i // 2 for i in range(30)]  # ties by position
    assert deciles[module == 2].tolist() == [r * 10 // 30 for r in ranks]


def test_population_from_arrays_keeps_every_measure_and_reads_measures_by_name():
    arrays = {"module_index": [0, 0, 1], "norm": [1, 2, 3], "cosine": [1.0, 0.5, 0.0], "cosine_distance": [0.0, 0.5, 1.0],
              "l2": [0.1, 0.2, 0.3], "other": [9, 9, 9]}
    pop = Population.from_arrays(arrays)
    assert pop.module.tolist() == [0, 0, 1] and pop.norm.tolist() == [1.0, 2.0, 3.0] and len(pop) == 3
    assert {k: v.tolist() for k, v in pop.values.items()} == {"cosine": [1.0, 0.5, 0.0], "cosine_distance": [0.0, 0.5, 1.0], "l2": [0.1, 0.2, 0.3]}
    assert pop.measure("cosine").tolist() == [0.0, 0.5, 1.0]  # larger = more drift
    assert pop.measure("cosine_distance").tolist() == [0.0, 0.5, 1.0] and pop.measure("l2").tolist() == [0.1, 0.2, 0.3]
    with pytest.raises(InputError, match="relative"):
        pop.measure("relative")


def test_common_reading():
    assert common(["H1", "H1"]) == "H1" and common(["H1", "inconclusive"]) == "mixed" and common([]) == "mixed"


def _tiny_population() -> tuple[Population, np.ndarray]:
    """Three modules; the group (first neurons of each) drifts more than the other neurons of its
    module in every module; measures below 1 as cosine distances are."""
    module = np.array([0] * 6 + [1] * 4 + [2] * 4)
    norm = np.array([1.0, 2.0, 0.5, 1.5, 3.0, 2.5, 1.0, 0.7, 1.4, 2.8, 0.9, 1.8, 0.6, 1.2])
    value = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.2, 0.7, 0.3, 0.1, 0.2, 0.6, 0.5, 0.4, 0.2])
    group = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    return Population(module, norm, {"cosine_distance": value, "l2": 2 * value}), group


def test_compare_group_whole_record_against_the_module_control_by_hand():
    """Group minus control mean per module: 0.85 - 0.2 (two neurons), 0.7 - 0.2, 0.55 - 0.3 (two);
    intervals are quantiles of the cluster bootstrap (seed 0) at `confidence` and 1 - 2 alpha; with
    h1_min_d 5 a d near 3 is no H1, and with margin 0.5 not equivalent either."""
    pop, group = _tiny_population()
    thresholds = Thresholds(margin=0.5, h1_min_d=5.0, confidence=0.9, alpha=0.1, n_boot=50)
    value = pop.values["cosine_distance"]
    scale = np.sqrt(sum(np.sum((value[pop.module == m] - value[pop.module == m].mean()) ** 2) for m in range(3)) / (14 - 3))
    draws = cluster_weights(3, 50, 0) @ np.array([1.3, 0.5, 0.5]) / (cluster_weights(3, 50, 0) @ np.array([2.0, 1, 2])) / scale
    result = compare_group(pop, group, ~group, "cosine", thresholds, controls=("module",))
    assert result.keys() == {"module"}
    record = result["module"]
    assert record.pop("ci") == pytest.approx(np.quantile(draws, [0.05, 0.95]))
    assert record.pop("equivalence_ci") == pytest.approx(np.quantile(draws, [0.1, 0.9]))
    assert record == pytest.approx({
        "difference": 0.46, "d": 0.46 / scale, "n_group": 5, "unmatched": 0, "n_control": 9, "mean_group": 3.5 / 5,
        "mean_control_matched": (0.4 + 0.2 + 0.6) / 5, "measure": "cosine", "scale": scale, "reading": "inconclusive"})
    assert compare_group(pop, group, ~group, "cosine", thresholds, seed=0) == compare_group(pop, group, ~group, "cosine", thresholds)


def test_compare_group_regression_scale_is_the_within_module_sd_of_log_drift():
    pop, group = _tiny_population()
    thresholds = Thresholds(margin=0.5, h1_min_d=5.0, confidence=0.9, alpha=0.1, n_boot=50)
    log_value = np.log(pop.values["l2"])
    scale = np.sqrt(sum(np.sum((log_value[pop.module == m] - log_value[pop.module == m].mean()) ** 2) for m in range(3)) / (14 - 3))
    slope, beta = _least_squares(log_value, np.log(pop.norm), group.astype(float), pop.module)
    result = compare_group(pop, group, ~group, "l2", thresholds, controls=("regression",))["regression"]
    assert result["scale"] == pytest.approx(scale) and result["d"] == pytest.approx(beta / scale)
    assert result["beta"] == pytest.approx(beta) and result["norm_slope"] == pytest.approx(slope)


def test_compare_group_reads_given_norm_deciles_as_the_strata():
    """With every neuron in decile 0 the decile-matched control is the module control."""
    pop, group = _tiny_population()
    result = compare_group(pop, group, ~group, "l2", THRESHOLDS, controls=("module", "module_norm_decile"),
                           deciles=np.zeros(len(pop), dtype=np.int64))
    assert result["module_norm_decile"] == result["module"]


def test_analyse_population_whole_record_one_bootstrap_seed_per_group_and_measure():
    pop, group = _tiny_population()
    other = np.zeros(len(pop), dtype=bool)
    other[[2, 7, 12]] = True
    thresholds = Thresholds(margin=0.5, h1_min_d=5.0, confidence=0.9, alpha=0.1, n_boot=50)
    result = analyse_population(pop, {"a": group, "b": other}, thresholds, seed=7, measures=("cosine", "l2"))
    control = ~group & ~other
    expected = {name: {m: compare_group(pop, mask, control, m, thresholds, 7 + 100 * k + j) for j, m in enumerate(("cosine", "l2"))}
                for k, (name, mask) in enumerate((("a", group), ("b", other)))}
    np.testing.assert_equal(result["comparisons"], expected)  # NaN equals NaN here
    readings = {name: {m: expected[name][m]["module_norm"]["reading"] for m in ("cosine", "l2")} for name in ("a", "b")}
    assert result["readings"] == readings and result["primary_control"] == "module_norm" and result["verdict_measures"] == ["cosine", "l2"]
    assert result["thresholds"] == {"margin": 0.5, "h1_min_d": 5.0, "confidence": 0.9, "alpha": 0.1, "n_boot": 50,
                                    "equivalence_interval": pytest.approx(0.8)}
    np.testing.assert_equal(analyse_population(pop, {"a": group}, thresholds, measures=("cosine", "l2"))["comparisons"]["a"]["l2"],
                            compare_group(pop, group, ~group, "l2", thresholds, 1))  # default seed 0, measure 1


def test_nearest_norm_controls_tied_in_norm_are_taken_by_position():
    """Twenty-nine controls per module, norms 2, 1, 2, 1, ...; the group neuron (the last, norm 1)
    is matched with the first three controls of norm 1 in the population's order, whatever the sort.
    Then a neuron of norm 2 between controls of norms 1 and 4, all at the same log distance: the
    window's lower half (the last four of norm 1) is taken; and equally near controls on both sides
    of a neuron are taken from the lower side first."""
    module = np.tile([0, 1], 30)
    norm = np.zeros(60)
    for m in (0, 1):
        norm[module == m] = np.tile([2.0, 1.0], 15)
    values = np.arange(60.0)
    group = np.zeros(60, dtype=bool)
    group[-2:] = True
    first = [[i for i in range(58) if module[i] == m and norm[i] == 1.0][:3] for m in (0, 1)]
    result = nearest_norm_effect(values, norm, group, ~group, module, 1.0, np.ones((1, 2)), k=3)
    assert result["mean_control_matched"] == pytest.approx(np.mean(values[first[0] + first[1]]))
    norm = np.array([1.0] * 8 + [4.0] * 8 + [2.0])
    group = np.arange(17) == 16
    result = nearest_norm_effect(np.arange(17.0), norm, group, ~group, np.zeros(17, dtype=np.int64), 1.0, np.ones((1, 1)))
    assert result["mean_control_matched"] == pytest.approx(np.mean([4.0, 5, 6, 7]))
    # k = 3 around norm 1: 0.5 and 2 (log distance log 2), then the first of 0.25, 0.25, 4, 4 (log 4)
    norm = np.array([0.25, 0.25, 0.5, 2.0, 4.0, 4.0, 1.0])
    group = np.arange(7) == 6
    result = nearest_norm_effect(np.array([10.0, 20, 30, 40, 50, 60, 0]), norm, group, ~group, np.zeros(7, dtype=np.int64), 1.0,
                                 np.ones((1, 1)), k=3)
    assert result["mean_control_matched"] == pytest.approx((10 + 30 + 40) / 3)
