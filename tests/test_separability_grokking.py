"""Experiment C (grokking): the data, the Fourier check, ρ of velocities, the window, the transition step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog, without_timestamps
from weightlab.separability.grokking import (
    GrokkingConfig,
    build_model,
    fourier_basis,
    fourier_norms,
    key_frequencies,
    level_correlation,
    modular_addition,
    train_grokking,
    transition_step,
    velocities,
    velocity_correlation,
    window_mask,
)

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
