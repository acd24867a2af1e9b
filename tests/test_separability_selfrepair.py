"""Experiment B's self-repair and amplitude measures on constructed cases with known answers."""

import numpy as np
import pytest
from test_separability_ioi import CLEAN_HEADS, CLEAN_MLPS, _ablated, _record

from weightlab.separability import ioi
from weightlab.separability.ablation import Head
from weightlab.separability.selfrepair import choose_random_heads, final_position_norm_ratio, mean_interval, recovered_fraction


def test_recovered_fraction_keeps_its_sign_when_the_downstream_sum_is_negative():
    """The issue's case: the late heads' summed direct effect goes from −1.96 to −0.38 (after / before
    = 0.19, which reads as "no compensation") while they rose by +1.58 and made up most of the
    ablated heads' lost 2.0."""
    before, after, direct = -1.96, -0.38, -2.0
    assert after / before == pytest.approx(0.194, abs=1e-3)
    total = direct + (after - before)  # nothing else changed
    assert recovered_fraction(total, direct) == pytest.approx(1.58 / 2.0)
    assert recovered_fraction(direct, direct) == 0.0  # no repair: the change is the direct effect
    assert recovered_fraction(0.0, direct) == 1.0  # full repair
    assert recovered_fraction(-2.5, direct) == pytest.approx(-0.25)  # the rest made it worse
    assert recovered_fraction(0.3, 0.0) is None


def test_recovered_fraction_of_the_constructed_ablation():
    """Head 1.0 (3.0 / scale 2) ablated; downstream head 2.1 rises from −1.0 to 0.2 (their late sum
    is negative before: the ratio is negative), MLP 2 drops, the scale grows."""
    clean, ablated = _record(CLEAN_HEADS, CLEAN_MLPS, 2.0), _ablated()
    parts = ioi.self_repair_decomposition(clean, ablated, [Head(1, 0)])
    comp = ioi.compensation(clean, ablated, [Head(1, 0)], floor=0.04)
    assert comp["late_compensation"] < 0  # after / before with a negative sum before
    fraction = recovered_fraction(parts["total"], parts["direct"])
    assert fraction == pytest.approx((parts["total"] + 1.5) / 1.5)
    assert fraction == pytest.approx((parts["heads"] + parts["mlps"] + parts["norm"]) / 1.5)


def test_final_position_norm_ratio_reads_the_late_layers_per_prompt():
    clean = np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]])
    ablated = np.array([[5.0, 3.0, 4.0], [9.0, 2.0, 3.0]])
    ratios = final_position_norm_ratio(clean, ablated, [1, 2])
    assert ratios.tolist() == pytest.approx([(1.5 + 1.0) / 2, (2.0 + 3.0) / 2])
    assert final_position_norm_ratio(clean, ablated, []).size == 0


def test_mean_interval_covers_the_mean_and_shrinks_with_more_prompts():
    rng = np.random.default_rng(0)
    small, large = mean_interval(rng.normal(1.0, 0.1, 20)), mean_interval(rng.normal(1.0, 0.1, 2000))
    for result in (small, large):
        assert result["ci95"][0] < result["mean"] < result["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < small["ci95"][1] - small["ci95"][0]
    assert large["ci95"][0] < 1.0 < large["ci95"][1]
    assert mean_interval([2.0]) == {"mean": 2.0, "ci95": None, "n": 1}


def test_random_heads_are_distinct_seeded_and_never_name_movers():
    movers = [(9, 9), (9, 6), (10, 0)]
    picks = choose_random_heads(12, 12, movers, 3, seed=4)
    assert picks == choose_random_heads(12, 12, movers, 3, seed=4) and len(set(picks)) == 3
    assert not set(picks) & set(movers)
    with pytest.raises(ValueError):
        choose_random_heads(2, 2, [(0, 0)], 4, seed=0)


def test_recovered_fraction_is_defined_from_the_floor_up():
    """A half-unit loss is well above the default floor of 1e-6; a loss of exactly the floor is
    defined (|direct| < floor is undefined), one just below is not."""
    assert recovered_fraction(-0.25, -0.5) == pytest.approx(0.5)
    assert recovered_fraction(0.0, -1e-6) == pytest.approx(1.0)
    assert recovered_fraction(0.0, -0.99e-6) is None
    assert recovered_fraction(0.0, -0.5, floor=0.6) is None


def test_mean_interval_of_two_points_is_known():
    """Bootstrap means of [0, 1] take 0, 0.5 and 1 with probabilities 1/4, 1/2, 1/4: the 95% interval
    is [0, 1]; a 40% interval (30% and 70% quantiles) is the central atom only. The record names its
    defaults (1000 resamples, seed 0) and repeats itself exactly; no values give no mean."""
    expected = {"mean": 0.5, "ci95": [0.0, 1.0], "n": 2, "method": "percentile bootstrap over prompts, 1000 resamples, seed 0"}
    assert mean_interval([0.0, 1.0]) == expected
    assert mean_interval([0.0, 1.0], confidence=0.4)["ci95"] == [0.5, 0.5]
    assert mean_interval([]) == {"mean": None, "ci95": None, "n": 0}
    values = np.random.default_rng(1).normal(0.0, 1.0, 30)
    assert mean_interval(values) == mean_interval(values)  # seeded: the same interval every time
    assert mean_interval(values, n_resamples=50, seed=3)["method"] == "percentile bootstrap over prompts, 50 resamples, seed 3"


def test_random_heads_accept_every_count_from_one_to_the_whole_pool():
    """n = 1 and n = all non-mover heads are valid draws (the latter is the whole pool, each head
    once); n = 0 and n above the pool are refused."""
    movers = [(0, 1), (1, 0)]
    pool = [(0, 0), (0, 2), (1, 1), (1, 2)]
    one = choose_random_heads(2, 3, movers, 1, seed=0)
    assert len(one) == 1 and one[0] in pool
    assert choose_random_heads(2, 3, movers, 4, seed=0) == pool
    for n in (0, 5):
        with pytest.raises(ValueError):
            choose_random_heads(2, 3, movers, n, seed=0)
    many = choose_random_heads(6, 6, movers, 30, seed=1)
    assert len(set(many)) == 30 and not set(many) & set(movers)
