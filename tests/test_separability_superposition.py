"""Experiment D (superposition): the toy model, ablation-based suppressor identification and the bootstrap,
each on a constructed case whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.superposition import (
    SuperpositionConfig,
    ToyModel,
    ablate_unit,
    ablation_ratios,
    compare_variances,
    output_variance,
    ratio_of_means,
    run_superposition,
    suppressor_mask,
    train,
    unit_variances,
)
from weightlab.stats import bootstrap_interval

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(n_features=6, n_hidden=2, n_instances=3, feature_probability=0.2, importance_decay=0.8, train_steps=60,
            batch_size=64, lr=1e-2, weight_decay=0.01, n_samples=200, suppressor_threshold=1.5, ablation="zero",
            n_bootstrap=100, log_every=10)


def constructed(epsilon: float = 0.05, large: float = 10.0) -> ToyModel:
    """Two features, three units: 0 carries feature 0; 1 is a planted suppressor; 2 is dead.

    Unit 1 reads ``−ε x0 + L x1`` where feature 1 is always on (x1 = 1), so it writes the constant
    inhibition ``−ε L`` (minus a tiny ε² x0) into output 0, which the ReLU then clips: out0 =
    ReLU((1 + ε²) x0 − ε L). Its write into output 1 (``L² − ε L x0``) is cancelled by the bias
    ``−L²``, so output 1 stays 0 either way. Zero-ablating unit 1 restores out0 = x0, whose variance
    is far larger; zero-ablating unit 0 silences out0; unit 2 has no weights and no effect."""
    model = ToyModel(1, 2, 3)
    with torch.no_grad():
        model.W.copy_(torch.tensor([[[1.0, 0.0], [-epsilon, large], [0.0, 0.0]]]))
        model.b.copy_(torch.tensor([[0.0, -large**2]]))
    return model


def constructed_inputs(n: int = 20000, seed: int = 0) -> torch.Tensor:
    x0 = torch.rand(n, 1, generator=torch.Generator().manual_seed(seed))
    return torch.stack([x0, torch.ones_like(x0)], dim=-1)  # [batch, instance 1, feature 2]


def test_ablation_finds_the_planted_suppressor_and_not_a_unit_without_effect():
    model, x = constructed(), constructed_inputs()
    ratios = ablation_ratios(model, x, "zero")[0]
    # known answers for x0 ~ U[0, 1]: Var(x0) = 1/12; Var(ReLU(1.0025 x0 − 0.5)) ≈ 0.0262
    t = 0.5 / 1.0025
    expected_baseline = 1.0025**2 * ((1 - t) ** 3 / 3 - ((1 - t) ** 2 / 2) ** 2)
    assert ratios[1].item() == pytest.approx((1 / 12) / expected_baseline, rel=0.05)
    assert ratios[0].item() == pytest.approx(0.0, abs=1e-12)  # the carrier: its ablation silences the output
    assert ratios[2].item() == pytest.approx(1.0, abs=1e-12)  # the dead unit changes nothing
    assert suppressor_mask(ratios, 1.5).tolist() == [False, True, False]
    # identification is functional: the suppressor is not the high-variance unit
    variances = unit_variances(model, x)[0]
    assert variances[1] < 0.01 * variances[0]


def test_mean_ablation_keeps_the_suppressors_constant_inhibition():
    """Replacing the suppressor by its mean keeps its (constant) inhibition: no longer a suppressor."""
    ratios = ablation_ratios(constructed(), constructed_inputs(), "mean")[0]
    assert ratios[1].item() == pytest.approx(1.0, abs=0.05)
    assert ratios[2].item() == pytest.approx(1.0, abs=1e-12)
    assert not suppressor_mask(ratios, 1.5).any()


def test_an_instance_without_output_variance_has_no_suppressor():
    model = ToyModel(2, 4, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.b[0] = -100.0  # instance 0 outputs 0 for every input: its ratios are undefined
    ratios = ablation_ratios(model, torch.rand(100, 2, 4, generator=torch.Generator().manual_seed(1)))
    assert torch.isnan(ratios[0]).all() and torch.isfinite(ratios[1]).all()
    assert not suppressor_mask(ratios, 1.5)[0].any()


def test_ablation_hook_changes_exactly_one_unit_of_one_instance():
    model = ToyModel(3, 8, 4, torch.Generator().manual_seed(1))
    x = torch.rand(50, 3, 8, generator=torch.Generator().manual_seed(2))
    hook = ablate_unit(1, 2)
    h = model.hidden(x)
    changed = (hook(h) != h)
    assert changed[:, 1, 2].all() and changed.sum() == changed[:, 1, 2].sum()
    clean, ablated = model(x), model(x, hook)
    assert torch.equal(clean[:, [0, 2]], ablated[:, [0, 2]])  # other instances untouched
    assert not torch.equal(clean[:, 1], ablated[:, 1])


def test_output_variance_of_a_known_tensor():
    out = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]]])  # two samples, one instance, two features
    assert output_variance(out).tolist() == [pytest.approx(0.5)]  # variances 1 and 0, averaged


def test_bootstrap_interval_covers_the_true_ratio_and_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(123)
    draws, ratio_hits, mean_hits = 200, 0, 0
    for k in range(draws):
        first = rng.gamma(4.0, 3.0 / 4.0, size=25)  # mean 3
        second = rng.gamma(4.0, 1.0 / 4.0, size=30)  # mean 1
        low, high = bootstrap_interval((first, second), ratio_of_means, 999, 0.95, seed=k, method="BCa")
        ratio_hits += low <= 3.0 <= high
        low, high = bootstrap_interval((second,), np.mean, 999, 0.95, seed=k, method="BCa")
        mean_hits += low <= 1.0 <= high
    # nominal 0.95; the binomial standard error of 200 draws is 0.015
    assert 0.90 <= ratio_hits / draws <= 0.99
    assert 0.90 <= mean_hits / draws <= 0.99


def test_bootstrap_interval_is_seeded_and_undefined_for_a_single_unit():
    rng = np.random.default_rng(0)
    a, b = rng.gamma(2.0, 1.0, 20), rng.gamma(2.0, 1.0, 20)
    assert bootstrap_interval((a, b), ratio_of_means, 200, seed=5) == bootstrap_interval((a, b), ratio_of_means, 200, seed=5)
    assert bootstrap_interval((a, b), ratio_of_means, 200, seed=5) != bootstrap_interval((a, b), ratio_of_means, 200, seed=6)
    assert bootstrap_interval(([1.0], b), ratio_of_means, 200) is None


def test_compare_variances_ratio_interval_and_empty_groups():
    rng = np.random.default_rng(7)
    high, low = list(rng.gamma(8.0, 3.0 / 8.0, 15)), list(rng.gamma(8.0, 1.0 / 8.0, 25))
    result = compare_variances(high, low, 500, seed=1)
    assert result["ratio"] == pytest.approx(np.mean(high) / np.mean(low))
    assert 1.0 < result["ci95"][0] < result["ratio"] < result["ci95"][1]
    empty = compare_variances([], low, 500, seed=1)
    assert empty["ratio"] is None and empty["ci95"] is None and "no suppressor" in empty["note"]
    assert empty["n_suppressors"] == 0 and empty["n_clean"] == 25
    single = compare_variances([2.0], [1.0, 1.0], 500, seed=1)
    assert single["ratio"] == pytest.approx(2.0) and single["ci95"] is None and single["note"]


def test_toy_model_stores_features_in_superposition_only_when_they_are_sparse():
    """Elhage et al.'s known answer for the ReLU output model (5 features, 2 dimensions, importance 0.8^i): dense features give
    the two most important features orthogonal and drop the rest; sparse ones (p = 0.05) keep all five. (Importance 0.8^i
    rather than 0.9^i separates the dense case's top two from the third enough to converge in 300 steps at lr 0.03.)"""
    norms = {}
    for probability in (1.0, 0.05):
        cfg = SuperpositionConfig(**{**TINY, "n_features": 5, "n_hidden": 2, "n_instances": 2, "importance_decay": 0.8,
                                     "feature_probability": probability, "train_steps": 300, "batch_size": 256, "weight_decay": 0.0,
                                     "lr": 0.03, "hidden_activation": "linear"})
        generator = torch.Generator().manual_seed(0)
        model = ToyModel(cfg.n_instances, cfg.n_features, cfg.n_hidden, generator, cfg.hidden_activation)
        train(model, cfg, generator)
        norms[probability] = model.W.detach().norm(dim=1)  # [instance, feature]
    represented = norms[1.0] > 0.5
    assert represented[:, :2].all() and not represented[:, 2:].any()
    assert (norms[0.05] > 0.5).all()


def test_run_is_deterministic_and_its_log_is_complete():
    cfg = SuperpositionConfig.from_settings(TINY)
    documents = []
    for _ in range(2):
        log = AuditLog("d", "superposition", 3, TINY)
        summary = run_superposition(cfg, torch.Generator().manual_seed(3), 3, "cpu", log)
        documents.append(log.document(cfg.train_steps, **summary))
    first, second = (doc["summary"] for doc in documents)
    for key in ("units", "ratio", "ci95", "suppressor_variances", "clean_variances", "training"):
        assert first[key] == second[key]
    assert documents[0]["checkpoints"] == documents[1]["checkpoints"] and set(documents[0]["checkpoints"]) == {"0", "60"}
    assert first["n_units"] == len(first["units"]) == TINY["n_instances"] * TINY["n_hidden"]
    assert first["n_suppressors"] + first["n_clean"] == first["n_units"]
    assert len(first["suppressor_variances"]) == first["n_suppressors"]
    steps = [m["step"] for m in documents[0]["metrics"]]
    assert steps[0] == 0 and steps[-1] == TINY["train_steps"] - 1 and steps == sorted(steps)
    assert {"loss", "W_norm", "features_per_dim", "b_mean", "A_activation_L0", "sigma_sq_L0"} <= set(documents[0]["metrics"][0])


def test_settings_are_checked():
    with pytest.raises(InputError, match="unknown keys"):
        SuperpositionConfig.from_settings({**TINY, "n_heads": 4})
    with pytest.raises(InputError, match="ablation"):
        SuperpositionConfig.from_settings({**TINY, "ablation": "resample"})
    with pytest.raises(InputError, match="n_hidden"):
        SuperpositionConfig.from_settings({**TINY, "n_hidden": 6})


@pytest.mark.parametrize("preset", ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml"])
def test_presets_are_valid_settings(preset):
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    block = base.get("separability", {}).get("exp_d")
    if block is None:
        pytest.skip("config.yaml has no separability.exp_d block yet")
    override = yaml.safe_load((ROOT / preset).read_text()) or {}
    SuperpositionConfig.from_settings({**block, **override.get("separability", {}).get("exp_d", {})})
