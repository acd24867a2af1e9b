"""Experiment C (grokking): the data, the Fourier check, ρ of velocities, the window, the transition step."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from scipy.stats import t as student_t

from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog, without_timestamps
from weightlab.separability.grokking import (
    WINDOW,
    GrokkingConfig,
    analyse,
    build_model,
    first_step_above,
    fourier_basis,
    fourier_norms,
    is_bias,
    key_frequencies,
    lagged_correlation,
    level_correlation,
    modular_addition,
    rho_interval,
    train_grokking,
    transition_correlation,
    transition_step,
    transition_window,
    velocities,
    velocity_correlation,
    window_mask,
)
from weightlab.separability.observables import LogSchedule, layer_observables
from weightlab.separability.toy import ToyConfig

# ρ's within-run interval from 200 block-bootstrap resamples, not 2000 (conftest.few_block_resamples)
pytestmark = pytest.mark.usefixtures("few_block_resamples")

TINY = {
    "p": 11, "train_fraction": 0.5, "steps": 40, "lr": 1e-3, "betas": [0.9, 0.98], "warmup_steps": 10,
    "d_model": 32, "n_heads": 4, "d_head": 8, "d_mlp": 64, "probe_size": 64,
    "log_dense_every": 5, "log_sparse_every": 20, "log_dense_until": 20, "key_frequency_factor": 4.0,
}


# --- data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("p,fraction", [(7, 0.3), (23, 0.5), (31, 0.8)])
def test_modular_addition_labels_and_split(p: int, fraction: float) -> None:
    data = modular_addition(p, fraction, seed=3, probe_size=50)
    a, b, eq = data.tokens.T
    assert torch.equal(data.labels, (a + b) % p)
    assert torch.all(eq == p)  # the '=' token
    assert sorted(zip(a.tolist(), b.tolist())) == [(i, j) for i in range(p) for j in range(p)]  # every pair once
    train, test = set(data.train.tolist()), set(data.test.tolist())
    assert not train & test and len(train | test) == p * p
    assert len(train) == round(fraction * p * p)
    assert len(data.probe) == min(50, p * p) and len(set(data.probe.tolist())) == len(data.probe)


def test_split_is_seeded() -> None:
    first, again, other = (modular_addition(23, 0.3, seed=s) for s in (1, 1, 2))
    assert torch.equal(first.train, again.train) and torch.equal(first.probe, again.probe)
    assert not torch.equal(first.train, other.train)


def test_config_rejects_bad_settings() -> None:
    assert GrokkingConfig.from_settings(TINY).p == 11
    for bad in ({"p": 15}, {"p": 2}, {"train_fraction": 1.0}, {"key_frequency_factor": 1.0}):
        with pytest.raises(InputError):
            GrokkingConfig.from_settings({**TINY, **bad})
    with pytest.raises(InputError, match="unknown keys"):
        GrokkingConfig.from_settings({**TINY, "batch_size": 8})


# --- Fourier ------------------------------------------------------------------------------------


def planted_embedding(p: int, d: int, frequencies: list[int], noise: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.arange(p, dtype=torch.float64)[:, None]
    embedding = noise * torch.randn(p, d, generator=generator, dtype=torch.float64)
    for k in frequencies:
        u, v = torch.randn(2, d, generator=generator, dtype=torch.float64)
        embedding += torch.cos(2 * math.pi * k * x / p) * u + torch.sin(2 * math.pi * k * x / p) * v
    return embedding


def test_fourier_basis_is_orthonormal() -> None:
    basis = fourier_basis(13)
    assert torch.allclose(basis @ basis.T, torch.eye(13, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("p,frequencies", [(31, [2, 5, 9]), (47, [1, 14, 23]), (59, [17])])
def test_planted_frequencies_are_found(p: int, frequencies: list[int]) -> None:
    embedding = planted_embedding(p, 64, frequencies, noise=0.05)
    norms = fourier_norms(embedding)
    assert len(norms) == (p - 1) // 2 + 1
    assert np.isclose((norms**2).sum(), float(embedding.pow(2).sum()))  # Parseval: nothing lost
    found = key_frequencies(norms, factor=4.0)
    assert sorted(found["key_frequencies"]) == frequencies
    assert found["share"] > 0.95


def test_pure_cosine_sits_on_its_frequency_only() -> None:
    p = 29
    x = torch.arange(p, dtype=torch.float64)
    embedding = torch.stack([torch.cos(2 * math.pi * 4 * x / p), torch.sin(2 * math.pi * 4 * x / p)], 1)
    norms = fourier_norms(embedding)
    assert norms[4] == pytest.approx(math.sqrt(p))  # each column has norm sqrt(p / 2)
    assert np.allclose(np.delete(norms, 4), 0, atol=1e-9)


def test_random_embedding_has_no_key_frequency() -> None:
    embedding = torch.randn(47, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    found = key_frequencies(fourier_norms(embedding), factor=4.0)
    assert found["key_frequencies"] == []
    assert found["share"] == 0.0


# --- velocities, window, ρ ----------------------------------------------------------------------


def test_velocities_on_uneven_steps() -> None:
    steps = [0, 10, 30, 35, 100]
    assert np.allclose(velocities(steps, [3 * s - 2 for s in steps]), 3.0)
    quadratic = velocities(steps, [s * s for s in steps])  # central differences are exact for s²
    assert np.allclose(quadratic[1:-1], [2 * s for s in steps[1:-1]])
    with pytest.raises(ValueError):
        velocities([0, 5, 5], [1, 2, 3])


def sigmoid_run(sign: float) -> tuple[list[int], list[float], list[float]]:
    """Accuracy rising along a sigmoid (uneven log steps); amplitude moving with velocity −/+ that
    of accuracy times a decreasing factor (so the relation is monotone but not linear)."""
    steps = sorted({*range(0, 2000, 100), *range(800, 1200, 10)})
    t = np.asarray(steps, dtype=float)
    acc = 0.02 + 0.96 / (1 + np.exp(-(t - 1000) / 60))
    amp = 10 + sign * np.cumsum(np.gradient(acc, t) ** 3 * np.gradient(t) * 1e6)
    return steps, acc.tolist(), amp.tolist()


@pytest.mark.parametrize("sign,expected", [(-1.0, -1.0), (1.0, 1.0)])
def test_rho_has_the_known_sign(sign: float, expected: float) -> None:
    steps, acc, amp = sigmoid_run(sign)
    result = velocity_correlation(steps, acc, amp)
    assert result["rho_points"] == int(window_mask(acc).sum()) >= 10
    assert result["spearman_rho"] == pytest.approx(expected, abs=0.05)
    assert result["rho_reason"] is None


def test_window_is_strict_and_only_window_points_count() -> None:
    assert window_mask([0.1, 0.15, 0.16, 0.5, 0.84, 0.85, 0.9]).tolist() == [False, False, True, True, True, False, False]
    steps = list(range(0, 400, 10))
    acc = 1 / (1 + np.exp(-(np.asarray(steps) - 200) / 25.0))
    amp = 50 - 10 * acc
    inside = window_mask(acc)
    result = velocity_correlation(steps, acc, amp)
    assert result["rho_points"] == int(inside.sum()) == 9
    assert result["spearman_rho"] == pytest.approx(-1.0, abs=0.05)  # −1 up to rounding among tied velocities
    # amplitude changed arbitrarily away from the window (≥ 2 logs from it, out of reach of the
    # central differences): ρ does not move; with a window that admits every point, it does
    near = np.convolve(inside, np.ones(5), mode="same") > 0
    scrambled = np.where(near, amp, np.random.default_rng(0).normal(50, 20, len(amp)))
    assert velocity_correlation(steps, acc, scrambled) == result
    everywhere = velocity_correlation(steps, acc, scrambled, window=(-1.0, 2.0))
    assert everywhere["rho_points"] == len(steps) and everywhere["spearman_rho"] != pytest.approx(result["spearman_rho"])


def test_original_code_statistic_is_pearson_on_levels() -> None:
    assert level_correlation([0.1, 0.2, 0.4, 0.8], [9.0, 8.0, 6.0, 2.0]) == pytest.approx(-1.0)
    assert level_correlation([0.1, 0.1], [1.0, 2.0]) is None


def test_rho_needs_enough_points() -> None:
    steps, acc, amp = [0, 100, 200, 300], [0.05, 0.5, 0.95, 0.99], [10.0, 9.0, 8.0, 7.5]
    result = velocity_correlation(steps, acc, amp)
    assert result["spearman_rho"] is None and result["rho_points"] == 1
    assert "at least 3" in result["rho_reason"]


# --- transition step ----------------------------------------------------------------------------


def test_transition_step_on_constructed_curves() -> None:
    steps = [0, 100, 200, 300, 400, 500]
    assert transition_step(steps, [0.01, 0.05, 0.4, 0.85, 0.93, 0.99]) == 400
    assert transition_step(steps, [0.3, 0.5, 0.8, 0.95, 0.99, 1.0]) is None  # never below 0.2 first
    assert transition_step(steps, [0.01, 0.1, 0.5, 0.7, 0.9, 0.88]) is None  # 0.9 is not > 0.9
    assert transition_step(steps, [0.95, 0.1, None, 0.5, 0.91, 0.99]) == 400  # a high start does not count
    assert transition_step([], []) is None


# --- training -----------------------------------------------------------------------------------


def run_tiny(condition: str, with_model: bool = False):
    cfg = GrokkingConfig.from_settings(TINY)
    log = AuditLog("c", condition, 0, cfg.as_dict())
    model, summary = train_grokking(cfg, condition, seed=0, device="cpu", log=log)
    return (log, summary, model) if with_model else (log, summary)


@pytest.fixture(scope="module")
def high_wd():
    """One tiny high_wd run, (log, summary, model), read by two tests that each also train in their
    call phase (mutmut maps a test to the functions called there, not in a shared fixture)."""
    return run_tiny("high_wd", with_model=True)


def test_training_logs_the_observables_and_is_deterministic(high_wd) -> None:
    log, summary, _ = high_wd
    again, _ = run_tiny("high_wd")
    assert without_timestamps(log.metrics) == without_timestamps(again.metrics) and log.checkpoints == again.checkpoints
    assert log.metrics[0]["step"] == 0 and log.metrics[-1]["step"] == TINY["steps"]
    assert log.metrics[0]["G"] is None
    assert all(0.0 <= m["G"] <= 1.0 for m in log.metrics[1:])
    assert all(m["psi_accuracy"] == m["test_accuracy"] for m in log.metrics)
    assert summary["n_train"] + summary["n_test"] == TINY["p"] ** 2
    assert len(summary["fourier_norms"]) == (TINY["p"] - 1) // 2 + 1
    doc = log.document(TINY["steps"], **summary)  # validates against the audit-log schema
    assert set(doc["checkpoints"]) == {"0", str(TINY["steps"])}


def test_biases_stay_zero_and_weights_train() -> None:
    # its own run, not the fixture's: mutmut maps a test to the functions its call phase runs, and
    # only this test would notice a trainer that updates biases
    _, _, model = run_tiny("high_wd", with_model=True)
    initial = build_model(GrokkingConfig.from_settings(TINY), seed=0)
    for (name, trained), (_, start) in zip(model.named_parameters(), initial.named_parameters()):
        if name.rsplit(".", 1)[-1].startswith("b_"):
            assert torch.count_nonzero(trained) == 0, name  # Nanda's model has no biases
        else:
            assert not torch.equal(trained, start), name


def test_weight_decay_is_the_only_difference_between_conditions(high_wd) -> None:
    high, _, _ = high_wd
    none, _ = run_tiny("no_wd")
    assert without_timestamps(high.metrics)[0] == without_timestamps(none.metrics)[0]  # same split, probe and initialisation
    assert high.checkpoints["0"] == none.checkpoints["0"]
    assert high.metrics[-1]["weight_norm"] < none.metrics[-1]["weight_norm"]


# --- the configuration's bounds, the model it describes -------------------------------------------


@pytest.mark.parametrize("changed", [
    {"p": 3, "train_fraction": 0.15},  # the smallest odd prime; round(0.15 · 9) = 1 training pair
    {"p": 3, "train_fraction": 0.9},  # round(8.1) = 8 of 9: one pair held out
    {"betas": [0.0, 0.98]}, {"betas": [0.9, 0.0]},
    {"warmup_steps": 0, "log_dense_until": 0},
    {"steps": 1, "d_model": 1, "n_heads": 1, "d_head": 1, "d_mlp": 1, "probe_size": 1, "log_dense_every": 1,
     "log_sparse_every": 1},
    {"lr": 1e-9, "key_frequency_factor": 1.5},
])
def test_config_accepts_settings_on_its_bounds(changed: dict) -> None:
    cfg = GrokkingConfig.from_settings({**TINY, **changed})
    assert cfg.as_dict() == {**TINY, **changed}


@pytest.mark.parametrize("bad,problem", [
    ({"p": 4}, "p (4) must be an odd prime"), ({"p": 9}, "p (9) must be an odd prime"),
    ({"p": -3}, "train_fraction (0.5) must leave"),  # no pair at all
    ({"p": 3, "train_fraction": 0.05}, "train_fraction (0.05) must leave"),  # round(0.45) = 0 training pairs
    ({"p": 3, "train_fraction": 0.97}, "train_fraction (0.97) must leave"),  # round(8.73) = 9: no test pair
    ({"betas": [0.9, 1.0]}, "betas ([0.9, 1.0]) must be"), ({"betas": [-0.1, 0.9]}, "betas"),
    ({"betas": [0.9]}, "betas"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"log_dense_until": -1}, "warmup_steps"),
    *(({name: 0}, "steps, model sizes") for name in ("steps", "d_model", "n_heads", "d_head", "d_mlp", "probe_size",
                                                     "log_dense_every", "log_sparse_every")),
    ({"lr": 0.0}, "lr (0.0) must be > 0"), ({"key_frequency_factor": 1.0}, "key_frequency_factor"),
])
def test_config_names_each_bad_setting(bad: dict, problem: str) -> None:
    with pytest.raises(InputError, match=re.escape(problem)):
        GrokkingConfig.from_settings({**TINY, **bad})


def test_config_reads_its_block_and_describes_nandas_model() -> None:
    with pytest.raises(InputError, match=r"^separability\.exp_c: missing keys \['lr'\]"):
        GrokkingConfig.from_settings({k: v for k, v in TINY.items() if k != "lr"})
    cfg = GrokkingConfig.from_settings({**TINY, "betas": [0, 1 / 2]})
    assert cfg.betas == (0.0, 0.5) and all(isinstance(b, float) for b in cfg.betas)  # a tuple of floats
    assert cfg.as_dict() == {**TINY, "betas": [0.0, 0.5]}
    assert cfg.model_config() == ToyConfig(d_vocab=12, n_ctx=3, d_model=32, n_heads=4, d_head=8, n_layers=1, d_mlp=64,
                                           normalization=None, mlp_positions="last", d_vocab_out=11)
    assert GrokkingConfig.from_settings({**TINY, "n_heads": 2, "d_head": 16}).model_config().n_heads == 2


def test_data_keeps_p_and_the_default_probe_size() -> None:
    data = modular_addition(23, 0.5, seed=0)  # 529 pairs: the default probe takes 512 of them
    assert data.p == 23 and len(data.probe) == 512
    assert data.to("cpu").p == 23


def test_fourier_basis_needs_an_odd_p_of_at_least_3() -> None:
    for p in (3, 9, 15):  # odd, not prime: the basis is defined
        basis = fourier_basis(p)
        assert torch.allclose(basis @ basis.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    for p in (1, 2, 4, 10):
        with pytest.raises(InputError):
            fourier_basis(p)


def test_key_frequencies_on_hand_computed_spectra() -> None:
    # energies: constant 1, periodic [1, 9, 1, 25, 1]: median 1, threshold 4; keys by energy, largest first
    assert key_frequencies([1, 1, 3, 1, 5, 1], factor=4.0) == {"key_frequencies": [4, 2], "share": 34 / 38,
                                                              "threshold_energy": 4.0}
    # an energy exactly at the threshold is not above it
    assert key_frequencies([0, 1, 1, 2, 1, 1], factor=4.0) == {"key_frequencies": [], "share": 0.0,
                                                              "threshold_energy": 4.0}
    # a small total (< 1) still gives a share; no energy at all gives none
    assert key_frequencies([0.1, 0.1, 0.5, 0.1], factor=4.0)["share"] == pytest.approx(0.25 / 0.28)
    assert key_frequencies([0.0, 0.0, 0.0], factor=4.0) == {"key_frequencies": [], "share": None, "threshold_energy": 0.0}
    # the constant and one frequency are enough; the constant alone is not
    assert key_frequencies([1.0, 2.0], factor=4.0) == {"key_frequencies": [], "share": 0.0, "threshold_energy": 16.0}
    with pytest.raises(InputError):
        key_frequencies([1.0], factor=4.0)


def test_velocities_on_the_smallest_and_on_unit_spaced_series() -> None:
    assert velocities([0, 2], [1.0, 5.0]).tolist() == [2.0, 2.0]
    assert velocities([0, 1, 2], [0.0, 1.0, 4.0]).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="equal length"):
        velocities([0, 1, 2], [1.0, 2.0])


def test_level_correlation_of_two_points() -> None:
    assert level_correlation([0.1, 0.3], [2.0, 1.0]) == pytest.approx(-1.0)


def test_rho_of_velocities_records_on_constructed_windows() -> None:
    empty = {"spearman_rho": None, "spearman_p_value": None, "rho_ci95": None, "rho_points": 0}
    assert velocity_correlation([0], [0.5], [1.0]) == {**empty, "rho_reason": "only 1 logged step(s)"}
    assert velocity_correlation([0, 10], [0.5, 0.6], [1.0, 2.0]) == {
        **empty, "rho_points": 2, "rho_reason": "2 logged step(s) with 0.15 < test accuracy < 0.85; ρ needs at least 3"}
    # accuracy linear in the window: its velocity is constant there, ρ undefined
    steps = list(range(8))
    linear = [0.125 * (s + 1) for s in steps]  # exact in binary: 0.25 .. 0.75 inside the window
    assert velocity_correlation(steps, linear, [s * s for s in steps]) == {
        **empty, "rho_points": 5, "rho_reason": "a velocity is constant inside the window"}


def test_rho_p_value_is_spearmans() -> None:
    """Four window points (steps 1..4) whose velocity ranks are (2, 4, 3, 1) for accuracy and (2, 3, 4, 1)
    for A_param: Σd² = 2, so ρ = 1 − 6·2/(4·15) = 0.8, and its p-value is that of the t statistic
    ρ·sqrt((n − 2)/(1 − ρ²)) with n − 2 = 2 degrees of freedom."""
    steps = list(range(6))
    acc = [0.1, 0.2, 0.4, 0.7, 0.8, 0.95]  # central velocities at steps 1..4: 0.15, 0.25, 0.2, 0.125
    amp = [0.0, 0.0, 4.0, 6.0, 12.0, 8.0]  # central velocities at steps 1..4: 2, 3, 4, 1
    result = velocity_correlation(steps, acc, amp)
    assert result["rho_points"] == 4 and result["rho_reason"] is None
    assert result["spearman_rho"] == pytest.approx(0.8)
    t_stat = 0.8 * math.sqrt(2 / (1 - 0.8**2))
    assert result["spearman_p_value"] == pytest.approx(2 * student_t.sf(t_stat, 2))


def test_rho_interval_of_a_constant_or_a_two_valued_series() -> None:
    """Resamples where a velocity is constant are dropped (silently, not through scipy's warning); a
    series against itself has ρ = 1 on every other resample, whatever its range (here exactly 1)."""
    x = np.array([0.0, 1.0] * 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rho_interval(x, np.full(12, 2.0)) is None
        assert rho_interval(x, x) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_transition_correlation_records() -> None:
    empty = {"spearman_rho": None, "spearman_p_value": None, "rho_ci95": None, "rho_points": 0}
    assert transition_correlation([0, 1, 2], [0.1, 0.12, 0.1], [1.0, 2.0, 3.0]) == {
        **empty, "rho_window": None, "rho_reason": "no transition (test accuracy below 0.2, later above 0.9)"}
    assert transition_correlation([0, 10], [0.1, 0.95], [1.0, 2.0]) == {
        **empty, "rho_points": 2, "rho_window": [0, 10],
        "rho_reason": "2 logged step(s) in the transition window [0, 10]; ρ needs at least 3"}
    # window [2, 5], ends included: four points, A_param = 10 − accuracy, so ρ = −1 on every resample
    steps = list(range(9))
    acc = [0.05, 0.05, 0.1, 0.4, 0.7, 0.95, 0.97, 0.98, 0.99]
    amp = [10 - a for a in acc]
    result = transition_correlation(steps, acc, amp, min_points=4)
    assert result == {"spearman_rho": pytest.approx(-1.0), "spearman_p_value": pytest.approx(0.0, abs=1e-12),
                      "rho_ci95": [pytest.approx(-1.0), pytest.approx(-1.0)], "rho_points": 4, "rho_reason": None,
                      "rho_window": [2, 5]}


def test_transition_window_bounds() -> None:
    assert transition_window([0, 10, 20], [0.1, 0.6, 0.95], high=0.5) == (0, 10)
    assert transition_window([0, 10, 20, 30], [0.1, 0.2, 0.5, 0.95]) == (0, 30)  # 0.2 is not below 0.2
    assert transition_window([0, 10], [0.5, 0.95]) is None
    assert transition_step([0, 10], [0.2, 0.95]) is None


def test_first_step_above_skips_missing_values_and_needs_more_than_the_level() -> None:
    assert first_step_above([0, 1, 2, 3], [None, 0.5, 0.99, 1.0], 0.99) == 3
    assert first_step_above([0, 1], [None, 0.5], 0.99) is None


def test_is_bias_reads_the_last_name_part() -> None:
    assert [is_bias(n) for n in ("blocks.0.attn.b_Q", "blocks.0.attn.W_Q", "unembed.b_U", "b_x.W_E")] == [
        True, False, True, False]


# --- the lagged secondary -----------------------------------------------------------------------


def test_lagged_correlation_records_and_lag_range() -> None:
    few = {"rho": None, "lag": None, "by_lag": {}, "reason": "too few logged steps"}
    assert lagged_correlation([0, 10, 20], [0.1, 0.5, 0.9], [3.0, 2.0, 4.0], max_lag=20) == few
    assert lagged_correlation([0, 10, 20, 30], [0.1, 0.5, 0.6, 0.9], [3.0, 2.0, 4.0, 1.0], max_lag=-10) == few
    rng = np.random.default_rng(1)
    steps = list(range(0, 61, 10))  # seven grid points: a lag of k grid steps keeps 7 − |k| pairs, ≥ 3 up to 4
    acc, amp = rng.random(7).cumsum(), rng.random(7)
    result = lagged_correlation(steps, acc, amp, max_lag=50)
    assert set(result["by_lag"]) == {str(k) for k in range(-40, 41, 10)}
    lag = min(result["by_lag"], key=result["by_lag"].get)
    assert result == {"rho": result["by_lag"][lag], "lag": int(lag), "by_lag": result["by_lag"], "grid_steps": 10,
                      "reason": None}
    assert result["by_lag"]["0"] == pytest.approx(spearmanr(np.gradient(acc), np.gradient(amp))[0])
    assert set(lagged_correlation(steps, acc, amp, max_lag=20)["by_lag"]) == {"-20", "-10", "0", "10", "20"}
    assert set(lagged_correlation(steps, acc, amp, max_lag=0)["by_lag"]) == {"0"}
    assert set(lagged_correlation(steps[:4], acc[:4], amp[:4], max_lag=50)["by_lag"]) == {"-10", "0", "10"}
    # a last step off the grid: the grid stops at its last point ≤ that step (0..50, six points)
    off = lagged_correlation([*steps[:-1], 59], acc, amp, max_lag=50)
    assert set(off["by_lag"]) == {str(k) for k in range(-30, 31, 10)}


def test_lagged_correlation_of_a_constant_velocity() -> None:
    steps = list(range(0, 61, 10))
    line, wiggle = [0.5 * s for s in range(7)], [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0]
    none = {"rho": None, "lag": None, "by_lag": {}, "reason": "constant velocities"}
    assert lagged_correlation(steps, line, wiggle, max_lag=30) == none
    assert lagged_correlation(steps, wiggle, line, max_lag=30) == none


# --- the run's summary --------------------------------------------------------------------------


def test_analyse_on_a_constructed_log() -> None:
    """A hand-made log: train accuracy passes 0.99 at step 200 (0.99 itself at 100 does not count),
    test accuracy below 0.2 until 300 and above 0.9 from 600; A_param peaks at step 200."""
    steps = list(range(0, 1001, 100))
    test_acc = [0.01, 0.02, 0.05, 0.1, 0.3, 0.6, 0.95, 0.97, 0.98, 0.99, 1.0]
    train_acc = [0.1, 0.99, 0.995, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.999, 1.0]
    amplitude = [10.0, 12.0, 15.0, 14.0, 12.0, 9.0, 7.0, 6.5, 6.2, 6.1, 6.0]
    log = AuditLog("c", "high_wd", 0, {})
    for s, te, tr, a in zip(steps, test_acc, train_acc, amplitude):
        log.record(s, test_accuracy=te, train_accuracy=tr, A_param=a)
    initial = torch.randn(11, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.arange(11, dtype=torch.float64)[:, None]
    final = 0.01 * initial + 3 * torch.cos(2 * math.pi * 3 * x / 11) + torch.sin(2 * math.pi * 1 * x / 11)
    summary = analyse(log, initial, final, factor=4.0)
    norms, initial_norms = fourier_norms(final), fourier_norms(initial)
    keys = key_frequencies(norms, 4.0)
    assert keys["key_frequencies"] == [3, 1] and keys["share"] > 0.99
    assert summary == {
        "transition_step": 600, "train_fit_step": 200, "grokking_delay_steps": 400,
        "initial_test_accuracy": 0.01, "final_test_accuracy": 1.0, "final_train_accuracy": 1.0,
        **transition_correlation(steps, test_acc, amplitude),
        "band_correlation": velocity_correlation(steps, test_acc, amplitude),
        "lagged_correlation": lagged_correlation(steps, test_acc, amplitude, max_lag=500),
        "original_code_pearson_r": level_correlation(test_acc, amplitude),
        "A_param_initial": 10.0, "A_param_peak": 15.0, "A_param_peak_step": 200, "A_param_final": 6.0,
        "A_param_final_over_peak": 0.4,
        "key_frequencies": [3, 1], "key_frequency_share": keys["share"], "fourier_norms": norms.tolist(),
        "initial_key_frequencies": key_frequencies(initial_norms, 4.0)["key_frequencies"],
        "initial_key_frequency_share": key_frequencies(initial_norms, 4.0)["share"],
        "initial_fourier_norms": initial_norms.tolist(),
    }
    assert summary["rho_window"] == [300, 600] and summary["rho_points"] == 4
    assert summary["band_correlation"]["rho_points"] == 2  # 0.3 and 0.6 only
    assert summary["original_code_pearson_r"] < -0.5 and summary["lagged_correlation"]["grid_steps"] == 10
    # no train fit and no transition: no delay; A_param never above 0: no ratio
    flat = AuditLog("c", "no_wd", 0, {})
    for s in steps[:4]:
        flat.record(s, test_accuracy=0.5, train_accuracy=0.5, A_param=0.0)
    none = analyse(flat, initial, initial, factor=4.0)
    assert (none["transition_step"], none["train_fit_step"], none["grokking_delay_steps"],
            none["A_param_final_over_peak"]) == (None, None, None, None)
    late = AuditLog("c", "no_wd", 0, {})
    for s, te, tr in zip(steps, test_acc, [0.1] * 10 + [1.0]):
        late.record(s, test_accuracy=te, train_accuracy=tr, A_param=1.0)
    assert analyse(late, initial, initial, factor=4.0)["grokking_delay_steps"] == 600 - 1000
    early = AuditLog("c", "no_wd", 0, {})
    for s, te in zip(steps, [0.5] * 11):
        early.record(s, test_accuracy=te, train_accuracy=1.0, A_param=1.0)
    assert analyse(early, initial, initial, factor=4.0)["grokking_delay_steps"] is None


# --- training: the optimiser, the schedule, what a log step holds ---------------------------------


def trained_change(warmup_steps: int, steps: int, lr: float = 0.3) -> np.ndarray:
    """|Δ| / lr of every trained weight after `steps` updates with betas (0, 0) and no weight decay:
    Adam's step is then lr_t · g / (|g| + eps): ± lr_t, or 0 where the gradient is 0 (less where it is
    tiny, as it is for a few percent of the weights at initialisation)."""
    cfg = GrokkingConfig.from_settings({**TINY, "betas": [0.0, 0.0], "lr": lr, "steps": steps,
                                        "warmup_steps": warmup_steps})
    start = build_model(cfg, seed=0)
    model, _ = train_grokking(cfg, "no_wd", seed=0, device="cpu", log=AuditLog("c", "no_wd", 0, cfg.as_dict()))
    return np.concatenate([(trained - first).detach().abs().flatten().numpy() / lr
                           for (name, trained), first in zip(model.named_parameters(), start.parameters())
                           if not is_bias(name)])


@pytest.mark.parametrize("warmup_steps,steps,factors", [(2, 3, (0.5, 1.0, 1.0)), (1, 2, (1.0, 1.0))])
def test_adamw_steps_follow_the_linear_warmup(warmup_steps: int, steps: int, factors: tuple) -> None:
    """The learning rate of update s is lr · min(1, (s + 1) / warmup_steps): each weight moves by a
    signed sum of those factors (× lr), the largest where the gradient's sign never changes."""
    change = trained_change(warmup_steps, steps)
    sums = {abs(sum(f * s for f, s in zip(factors, signs))) for signs in np.ndindex(*(3,) * steps)
            for signs in [tuple(x - 1 for x in signs)]}
    on_grid = np.min(np.abs(change[:, None] - np.array(sorted(sums))[None, :]), axis=1) < 0.05
    assert on_grid.mean() > 0.98
    assert change.max() == pytest.approx(sum(factors), rel=1e-3)


def test_training_summary_and_log_records_of_its_own_run() -> None:
    # its own run, not the shared fixture's: mutmut maps a test to the functions called in its call phase
    log, summary = run_tiny("high_wd")
    assert {k: summary[k] for k in ("condition", "weight_decay", "p", "n_train", "n_test")} == {
        "condition": "high_wd", "weight_decay": 1.0, "p": 11, "n_train": 60, "n_test": 61}  # round(60.5) = 60
    assert set(log.metrics[0]) == {"step", "timestamp", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                   "psi_accuracy", "A_param", "weight_norm", "G", "A_activation_L0", "sigma_sq_L0"}
    assert [m["step"] for m in log.metrics] == scheduled_steps(log, GrokkingConfig.from_settings(TINY))
    # step 0 is the initial model: its loss and accuracy are those of the answer position ('=')
    cfg = GrokkingConfig.from_settings(TINY)
    model, data = build_model(cfg, seed=0), modular_addition(cfg.p, cfg.train_fraction, 0, cfg.probe_size)
    with torch.no_grad():
        logits = model(data.tokens[data.train])[:, -1]
    first = log.metrics[0]
    assert first["train_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, data.labels[data.train])))
    assert first["train_accuracy"] == float((logits.argmax(-1) == data.labels[data.train]).float().mean())
    # the residual observables come from the probe batch of `probe_size` pairs, at the answer position
    captured = {}
    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_resid_post",
                                                  lambda value, hook: captured.update(resid=value[:, -1]))]):
        model(data.tokens[data.probe])
    assert len(data.probe) == 64
    assert {k: first[k] for k in ("A_activation_L0", "sigma_sq_L0")} == pytest.approx(layer_observables([captured["resid"]]))


def scheduled_steps(log: AuditLog, cfg: GrokkingConfig) -> list[int]:
    """The steps the configured `LogSchedule` logs when told each logged test accuracy."""
    schedule = LogSchedule(total_steps=cfg.steps + 1, dense_every=cfg.log_dense_every, sparse_every=cfg.log_sparse_every,
                           dense_until=cfg.log_dense_until, band=WINDOW)
    accuracy = {m["step"]: m["test_accuracy"] for m in log.metrics}
    steps = []
    for step in range(cfg.steps + 1):
        if schedule.due(step):
            steps.append(step)
            if step not in accuracy:  # not logged: the lists differ from here on
                break
            schedule.observe(accuracy[step])
    return steps


def test_logging_is_dense_inside_the_band_and_ends_at_the_last_step() -> None:
    """A run whose test accuracy climbs into the 0.15–0.85 band after the dense phase: the schedule logs
    every `log_dense_every` steps there even where accuracy stands still, and the last step (43, off
    the sparse grid) is logged."""
    cfg = GrokkingConfig.from_settings({**TINY, "lr": 1e-2, "train_fraction": 0.8, "steps": 43, "log_dense_until": 10,
                                        "log_dense_every": 2})
    log = AuditLog("c", "no_wd", 0, cfg.as_dict())
    train_grokking(cfg, "no_wd", seed=0, device="cpu", log=log)
    steps, acc = log.series("test_accuracy")
    assert steps == scheduled_steps(log, cfg) and steps[-1] == 43
    held = [s for s, a, b in zip(steps[1:], acc, acc[1:]) if s > 10 and abs(b - a) <= 0.02 and 0.15 < a < 0.85]
    assert held and all(s + 2 in steps or s == 42 for s in held)  # still dense after a step that did not move
