"""Experiment C's transition window, its correlation and the lagged secondary, on synthetic curves."""

import numpy as np
import pytest

from weightlab.separability.grokking import (
    lagged_correlation,
    transition_correlation,
    transition_window,
    velocity_correlation,
)

# ρ's within-run interval from 200 block-bootstrap resamples, not 2000 (conftest.few_block_resamples)
pytestmark = pytest.mark.usefixtures("few_block_resamples")


def curves(lead: int = 0):
    """Steps 0..3000 every 10: a memorisation plateau whose test accuracy wiggles between 0.02 and
    0.18 (inside the original's 0.15 band at its peaks), then a logistic rise centred on step 2000;
    A_param rises slowly on the plateau and falls with the rise (shifted `lead` steps earlier)."""
    steps = np.arange(0, 3001, 10)
    rise = 1 / (1 + np.exp(-(steps - 2000) / 40))
    acc = 0.1 + 0.08 * np.sin(steps / 37.0) * (1 - rise) + 0.9 * rise
    amplitude = 10 + 0.001 * steps - 4 / (1 + np.exp(-(steps + lead - 2000) / 40))
    return steps.tolist(), acc.tolist(), amplitude.tolist()


def test_transition_window_runs_from_the_last_step_below_0_2_to_the_first_above_0_9():
    steps, acc, _ = curves()
    start, end = transition_window(steps, acc)
    a = np.asarray(acc)
    assert a[steps.index(end)] > 0.9 and all(v <= 0.9 for v in a[: steps.index(end)])
    assert a[steps.index(start)] < 0.2 and all(v >= 0.2 for v in a[steps.index(start) + 1: steps.index(end)])
    assert 1850 < start < 2000 < end < 2150
    assert transition_window([0, 10, 20], [0.1, 0.5, 0.6]) is None  # no transition
    assert transition_window([0, 10, 20], [0.95, 0.1, 0.5]) is None  # above 0.9 before any low point only


def test_the_transition_window_excludes_the_plateau_that_the_band_takes():
    steps, acc, amplitude = curves()
    inside = transition_correlation(steps, acc, amplitude)
    band = velocity_correlation(steps, acc, amplitude)
    assert inside["rho_window"] == list(transition_window(steps, acc))
    assert band["rho_points"] > inside["rho_points"]  # plateau wiggles above 0.15 enter the band
    assert inside["spearman_rho"] < -0.5  # accuracy rises while A_param falls (the wiggle blurs it a little)
    assert band["spearman_rho"] > inside["spearman_rho"]
    none = transition_correlation([0, 10, 20], [0.1, 0.12, 0.1], [1.0, 2.0, 3.0])
    assert none["spearman_rho"] is None and "no transition" in none["rho_reason"]


def test_lagged_correlation_finds_amplitude_moving_first():
    steps, acc, amplitude = curves(lead=60)
    result = lagged_correlation(steps, acc, amplitude, max_lag=200, grid=10)
    assert result["lag"] == 60 and result["rho"] < -0.3
    assert result["by_lag"]["0"] > result["rho"]


def test_t_interval_over_seeds():
    from weightlab.verdicts import t_interval

    assert t_interval([0.1]) == (0.1, None)
    mean, (low, high) = t_interval([-0.5, -0.4, -0.6])
    assert mean == pytest.approx(-0.5)
    assert low < -0.5 < high and high - low == pytest.approx(2 * 4.302653 * 0.1 / np.sqrt(3), rel=1e-4)


def test_rho_comes_with_the_runs_own_block_bootstrap_interval():
    steps, acc, amplitude = curves()
    inside = transition_correlation(steps, acc, amplitude)
    low, high = inside["rho_ci95"]
    assert low <= inside["spearman_rho"] <= high and high < 0  # the rise against the fall: ρ negative on every resample
    assert transition_correlation(steps, acc, amplitude)["rho_ci95"] == [low, high]  # seeded
    flat = transition_correlation(steps, acc, [10.0] * len(steps))  # A_param never moves: ρ is undefined
    assert flat["spearman_rho"] is None and flat["rho_ci95"] is None
    assert velocity_correlation(steps, acc, amplitude)["rho_ci95"] is not None
