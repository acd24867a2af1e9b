"""Experiment D (superposition): the toy model, ablation-based suppressor identification and the bootstrap,
each on a constructed case whose answer is known."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import weightlab.separability.superposition as superposition
from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.superposition import (
    DEFINITION,
    MODELS,
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
    weighted_mse,
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


def relu_variance(a: float, c: float) -> float:
    """Var(ReLU(a x − c)) for x ~ U[0, 1] and 0 < c < a."""
    t = c / a
    return a**2 * ((1 - t) ** 3 / 3 - ((1 - t) ** 2 / 2) ** 2)


def grid_variance(n: int) -> float:
    """Population variance of n evenly spaced points on [0, 1]."""
    return (n + 1) / (12 * (n - 1))


def grid_features(batch: int, n_instances: int, n_features: int, probability: float, generator=None) -> torch.Tensor:
    """Planted inputs for every instance: x0 = x2 = n evenly spaced points on [0, 1], x1 = 1, x3 = 0."""
    grid = torch.linspace(0.0, 1.0, batch)
    x = torch.zeros(batch, n_instances, n_features)
    x[:, :, 0] = x[:, :, 2] = grid[:, None]
    x[:, :, 1] = 1.0
    return x


def planting(W: list, b: list):
    """A stand-in for `train` that leaves the model at planted weights W [instance, unit, feature], b."""

    def planted_train(model, cfg, generator, log=None):
        with torch.no_grad():
            model.W.copy_(torch.tensor(W))
            model.b.copy_(torch.tensor(b))
        return {"planted": True}

    return planted_train


def suppressor_instance(epsilon: float) -> tuple[list, list]:
    """Four features (x1 = 1 always), three units: unit 0 carries x0; unit 1 reads L x1 − ε x0 (εL = 0.5) and
    inhibits output 0 by about 0.5 (its write into output 1 is cancelled by the bias −L²); unit 2 carries
    x2 at a quarter of its size. Zero-ablating unit 1 lets out0 = x0 through: a suppressor."""
    large = 0.5 / epsilon
    return [[1.0, 0.0, 0.0, 0.0], [-epsilon, large, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0]], [0.0, -large**2, 0.0, 0.0]


PLANTED = dict(n_features=4, n_hidden=3, n_instances=2, feature_probability=0.5, importance_decay=0.5, train_steps=1,
               batch_size=1, lr=0.0, weight_decay=0.0, n_samples=2001, suppressor_threshold=1.5, ablation="zero",
               n_bootstrap=200, log_every=1)


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


def test_a_run_on_a_planted_trained_model_gives_the_known_record(monkeypatch):
    """The whole summary of a run whose training is replaced by planted weights (four suppressor instances,
    ε = 0.05 to 0.25) on planted inputs: roles, ratios and variances are known by hand."""
    epsilons = (0.05, 0.1, 0.2, 0.25)
    monkeypatch.setattr(superposition, "train", planting(*zip(*map(suppressor_instance, epsilons))))
    monkeypatch.setattr(superposition, "sample_features", grid_features)
    cfg = SuperpositionConfig.from_settings({**PLANTED, "n_instances": 4})
    record = run_superposition(cfg, torch.Generator().manual_seed(0), 3)  # the default device: the CPU
    v = grid_variance(PLANTED["n_samples"])
    units, ratios, expected_loss = [], [], []
    x = np.linspace(0.0, 1.0, PLANTED["n_samples"])
    for i, epsilon in enumerate(epsilons):
        intact = relu_variance(1 + epsilon**2, 0.5) + v / 16  # out0 = ReLU((1 + ε²) x0 − 0.5), out2 = x2 / 4
        # unit 0 ablated: out0 = 0; unit 1: out0 = x0; unit 2: out2 = 0 (the other outputs are 0 throughout)
        ratio = [v / 16 / intact, (v + v / 16) / intact, relu_variance(1 + epsilon**2, 0.5) / intact]
        ratios += ratio
        for j, (role, variance) in enumerate((("clean", v), ("suppressor", epsilon**2 * v), ("clean", v / 4))):
            units.append({"instance": i, "unit": j, "role": role, "ablation_variance_ratio": pytest.approx(ratio[j], rel=1e-2),
                          "activation_variance": pytest.approx(variance, rel=1e-3)})
        # importance 0.5**i: out0 against x0, out1 = 0 against x1 = 1, out2 = x2 / 4 against x2, out3 = x3 = 0
        out0 = np.maximum((1 + epsilon**2) * x - 0.5, 0.0)
        expected_loss.append((np.mean((x - out0) ** 2) + 0.5 + 0.25 * np.mean((0.75 * x) ** 2)) / 4)
    superposition_record = record.pop("superposition")
    assert superposition_record["n_represented"] == [2] * 4 and superposition_record["holds"] is False  # ‖W_2‖ = 0.5 is not above 0.5
    interval = record.pop("ci95")
    suppressors, clean = [e**2 * v for e in epsilons], [v, v / 4] * 4
    assert record == {
        "n_suppressors": 4, "n_clean": 8, "suppressor_variance_mean": pytest.approx(np.mean(suppressors), rel=1e-3),
        "clean_variance_mean": pytest.approx(0.625 * v, rel=1e-3), "ratio": pytest.approx(np.mean(suppressors) / (0.625 * v), rel=1e-3),
        "note": None,
        "hidden_activation": "relu", "privileged_basis": True,
        "suppressor_variances": pytest.approx(suppressors, rel=1e-3), "clean_variances": pytest.approx(clean, rel=1e-3),
        "n_units": 12, "units": units,
        "ablation_ratio_range": pytest.approx([min(ratios), max(ratios)], rel=1e-2),
        "definition": DEFINITION.format(model=MODELS["relu"], ablation="0", threshold=1.5),
        "bootstrap": {"method": "BCa", "resampled": "units, each group independently", "n_resamples": 200, "confidence": 0.95,
                      "seed": 3, "statistic": "mean(suppressor Var h_j) / mean(clean Var h_j)"},
        "training": {"planted": True, "eval_loss": pytest.approx(np.mean(expected_loss), rel=1e-4),
                     "eval_loss_per_instance": pytest.approx(expected_loss, rel=1e-4)},
        "settings": {**PLANTED, "n_instances": 4, "hidden_activation": "relu"},
    }
    # the seeded BCa interval of the ratio (another seed gives another); every resample's ratio lies in [0.0025, 0.25]
    groups = (record["suppressor_variances"], record["clean_variances"])
    assert interval == bootstrap_interval(groups, ratio_of_means, 200, 0.95, 3, method="BCa")
    assert interval != bootstrap_interval(groups, ratio_of_means, 200, 0.95, 4, method="BCa")
    assert 0.0025 <= interval[0] <= record["ratio"] <= interval[1] <= 0.25


def test_mean_ablation_in_the_linear_model_finds_no_suppressor(monkeypatch):
    """The ReLU output model (no hidden ReLU) with unit 2 reading −x2 and writing it back into out2, mean ablation
    and threshold 1.2: every ratio is known and below 1.2 (zero ablation would make unit 1 a suppressor, 1.52)."""
    W = [[[1.0, 0.0, 0.0, 0.0], [-0.05, 10.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]]]
    monkeypatch.setattr(superposition, "train", planting(W, [[0.0, -100.0, 0.0, 0.0]]))
    monkeypatch.setattr(superposition, "sample_features", grid_features)
    settings = {**PLANTED, "n_instances": 1, "ablation": "mean", "suppressor_threshold": 1.2, "hidden_activation": "linear"}
    record = run_superposition(SuperpositionConfig.from_settings(settings), torch.Generator().manual_seed(0), 4)
    v = grid_variance(settings["n_samples"])
    intact = relu_variance(1.0025, 0.5) + v  # out0 = ReLU(1.0025 x0 − 0.5), out2 = −h2 = x2
    # unit 0 at its mean 0.5: out0 = 0.0025 x0; unit 1 at 10 − 0.025: out0 = ReLU(x0 − 0.49875); unit 2 at −0.5: out2 = 0.5
    ratios = [(0.0025**2 * v + v) / intact, (relu_variance(1.0, 0.49875) + v) / intact, relu_variance(1.0025, 0.5) / intact]
    assert [u["role"] for u in record["units"]] == ["clean"] * 3
    assert [u["ablation_variance_ratio"] for u in record["units"]] == pytest.approx(ratios, rel=1e-2)
    assert record["clean_variances"] == pytest.approx([v, 0.0025 * v, v], rel=1e-3)  # h2 = −x2 varies: no hidden ReLU
    assert {k: record[k] for k in ("n_suppressors", "n_clean", "suppressor_variance_mean", "ratio", "ci95", "note")} == {
        "n_suppressors": 0, "n_clean": 3, "suppressor_variance_mean": None, "ratio": None, "ci95": None,
        "note": "no suppressor unit: the ratio is undefined"}
    assert record["clean_variance_mean"] == pytest.approx(2.0025 / 3 * v, rel=1e-3)
    assert record["hidden_activation"] == "linear" and record["privileged_basis"] is False
    assert record["definition"] == DEFINITION.format(model=MODELS["linear"], ablation="its batch mean", threshold=1.2)
    assert record["superposition"]["n_represented"] == [3] and record["superposition"]["holds"] is False


def test_a_run_whose_outputs_never_vary_leaves_every_unit_undetermined(monkeypatch):
    W, _ = suppressor_instance(0.05)
    monkeypatch.setattr(superposition, "train", planting([W], [[-100.0] * 4]))  # every output clipped to 0
    monkeypatch.setattr(superposition, "sample_features", grid_features)
    record = run_superposition(SuperpositionConfig.from_settings({**PLANTED, "n_instances": 1}), torch.Generator(), 0)
    assert [(u["role"], u["ablation_variance_ratio"]) for u in record["units"]] == [("undetermined", None)] * 3
    assert record["ablation_ratio_range"] is None and record["suppressor_variances"] == record["clean_variances"] == []
    assert (record["n_suppressors"], record["n_clean"], record["ratio"]) == (0, 0, None)


def test_training_without_any_signal_only_decays_the_weights():
    """Features never present: every gradient is 0 (output ReLU(b) = ReLU(0) = 0 = target), so each AdamW step only
    multiplies W by 1 − lr·wd; every logged step records the loss 0 and the decayed weights' observables."""
    cfg = SuperpositionConfig(**{**TINY, "n_features": 3, "n_hidden": 2, "n_instances": 2, "feature_probability": 1e-12,
                                 "train_steps": 6, "lr": 0.1, "weight_decay": 0.5, "log_every": 1, "n_samples": 16})
    model = ToyModel(2, 3, 2, torch.Generator().manual_seed(0))
    start = model.W.detach().clone()
    log = AuditLog("d", "superposition", 0, TINY)
    result = train(model, cfg, torch.Generator().manual_seed(1), log)
    assert torch.allclose(model.W.detach(), start * 0.95**6, rtol=1e-5) and not model.b.detach().any()

    def observables(step: int) -> dict:
        norms = start.double().flatten(1).norm(dim=1) * 0.95**step
        return {"W_norm": pytest.approx(float(norms.mean()), rel=1e-5),
                "features_per_dim": pytest.approx(float((norms**2).mean() / 2), rel=1e-5),
                "b_mean": 0.0, "A_activation_L0": 0.0, "sigma_sq_L0": 0.0}

    assert [{k: v for k, v in m.items() if k != "timestamp"} for m in log.metrics] == [
        {"step": s, "loss": 0.0, "loss_max_instance": 0.0, **observables(s)} for s in range(6)]
    assert result == {"final_loss": 0.0, "final_loss_per_instance": [0.0, 0.0], **observables(6)}


@pytest.mark.parametrize("train_steps, log_every, steps", [
    (50, 4, list(range(40)) + [40, 44, 48, 49]),  # every step up to 10·log_every, then every log_every, and the last
    (40, 15, list(range(40))),  # log_every // 10 = 1
    (40, 20, list(range(0, 40, 2)) + [39]),  # log_every // 10 = 2
])
def test_training_logs_densely_then_every_log_every_steps(train_steps, log_every, steps):
    cfg = SuperpositionConfig(**{**TINY, "n_features": 3, "n_hidden": 2, "n_instances": 1, "batch_size": 4, "n_samples": 8,
                                 "train_steps": train_steps, "log_every": log_every})
    log = AuditLog("d", "superposition", 0, TINY)
    train(ToyModel(1, 3, 2, torch.Generator().manual_seed(0)), cfg, torch.Generator().manual_seed(0), log)
    assert [m["step"] for m in log.metrics] == steps


def test_the_probe_batch_is_capped_at_1024_samples():
    """A probe of min(n_samples, 1024) inputs: more samples draw the same probe and then the same training batches."""
    results = []
    for n_samples in (1024, 3000):
        cfg = SuperpositionConfig(**{**TINY, "n_features": 3, "n_hidden": 2, "n_instances": 1, "batch_size": 4,
                                     "train_steps": 3, "n_samples": n_samples})
        model = ToyModel(1, 3, 2, torch.Generator().manual_seed(0))
        results.append((train(model, cfg, torch.Generator().manual_seed(5)), model.W.detach().clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])


def test_weighted_mse_is_one_importance_weighted_loss_per_instance():
    x = torch.tensor([[[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]], [[1.0, 0.0], [2.0, 1.0], [1.0, 0.0]]])  # [batch 2, instance 3, feature 2]
    out = torch.zeros_like(x)
    weights = torch.tensor([1.0, 0.5])
    # instance 0: (1 + 0.5·4 + 1 + 0) / 4; instance 1: (0 + 0.5 + 4 + 0.5) / 4; instance 2: (9 + 0 + 1 + 0) / 4
    assert weighted_mse(out, x, weights).tolist() == pytest.approx([1.0, 1.25, 2.5])


def test_an_ablation_hook_sets_zero_unless_given_a_value():
    h = torch.ones(4, 2, 3)
    assert ablate_unit(1, 2)(h)[:, 1, 2].tolist() == [0.0] * 4
    assert ablate_unit(1, 2, torch.tensor(0.25))(h)[:, 1, 2].tolist() == [0.25] * 4


def test_a_suppressor_needs_a_ratio_above_the_threshold_and_a_defined_one():
    ratios = torch.tensor([[float("nan"), 0.8, 0.5, 0.4]])
    assert suppressor_mask(ratios, 0.5).tolist() == [[False, True, False, False]]  # NaN never; equal is not above


def test_ratio_of_means_along_an_axis_without_warnings():
    assert ratio_of_means(np.array([2.0, 4.0]), np.array([1.0, 3.0])) == pytest.approx(1.5)
    first, second = np.array([[2.0, 4.0], [1.0, 1.0]]), np.array([[1.0, 3.0], [4.0, 0.0]])
    assert ratio_of_means(first, second, axis=-1).tolist() == pytest.approx([1.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a resample of a clean group with zero mean: inf or NaN, quietly
        assert ratio_of_means(np.array([1.0]), np.array([0.0])) == math.inf
        assert math.isnan(ratio_of_means(np.array([0.0]), np.array([0.0])))


def test_compare_variances_records_in_full():
    suppressors, clean = [3.0, 5.0, 4.0], [1.0, 2.0, 1.5]
    result = compare_variances(suppressors, clean, 200, seed=1)
    interval = bootstrap_interval((suppressors, clean), ratio_of_means, 200, 0.95, 1, method="BCa")
    assert result == {"n_suppressors": 3, "n_clean": 3, "suppressor_variance_mean": 4.0, "clean_variance_mean": 1.5,
                      "ratio": pytest.approx(8 / 3), "ci95": interval, "note": None}
    assert interval != bootstrap_interval((suppressors, clean), ratio_of_means, 200, 0.95, 1)  # BCa, not percentile
    assert compare_variances(suppressors, clean, 200, seed=1) == result  # seeded
    assert compare_variances(suppressors, clean, 200, seed=2)["ci95"] != interval
    undefined = {"ratio": None, "ci95": None}
    assert compare_variances(suppressors, [], 200, seed=1) == {
        "n_suppressors": 3, "n_clean": 0, "suppressor_variance_mean": 4.0, "clean_variance_mean": None, **undefined,
        "note": "no clean unit: the ratio is undefined"}
    assert compare_variances([], clean, 200, seed=1) == {
        "n_suppressors": 0, "n_clean": 3, "suppressor_variance_mean": None, "clean_variance_mean": 1.5, **undefined,
        "note": "no suppressor unit: the ratio is undefined"}
    assert compare_variances([1.0, 2.0], [0.0, 0.0], 200, seed=1) == {
        "n_suppressors": 2, "n_clean": 2, "suppressor_variance_mean": 1.5, "clean_variance_mean": 0.0, **undefined,
        "note": "the clean units have zero variance: the ratio is undefined"}
    assert compare_variances([2.0], [1.0, 1.0], 200, seed=1) == {
        "n_suppressors": 1, "n_clean": 2, "suppressor_variance_mean": 2.0, "clean_variance_mean": 1.0, "ratio": 2.0,
        "ci95": None, "note": "fewer than two units in a group (or degenerate values): no bootstrap interval"}


@pytest.mark.parametrize("change, message", [
    ({"n_hidden": 0}, r"n_hidden \(0\) must lie between 1 and n_features − 1 \(5\)"),
    ({"feature_probability": 0.0}, r"feature_probability \(0.0\) must lie in \(0, 1\]"),
    ({"feature_probability": 1.5}, r"feature_probability \(1.5\) must lie in \(0, 1\]"),
    ({"importance_decay": 0.0}, r"importance_decay \(0.0\) must lie in \(0, 1\]"),
    ({"importance_decay": 1.5}, r"importance_decay \(1.5\) must lie in \(0, 1\]"),
    ({"hidden_activation": "tanh"}, r"hidden_activation 'tanh' must be one of relu, linear"),
    ({"ablation": "resample"}, r"ablation 'resample' must be one of zero, mean"),
    *[({key: 0}, r"^separability\.exp_d: n_instances, train_steps, batch_size, n_bootstrap, log_every must be ≥ 1 and n_samples ≥ 2\.$")
      for key in ("n_instances", "train_steps", "batch_size", "n_bootstrap", "log_every")],
    ({"n_samples": 1}, r"must be ≥ 1 and n_samples ≥ 2"),
    ({"n_hidden": 6, "ablation": "x"}, r"^separability\.exp_d: n_hidden \(6\) .* \(5\); ablation 'x' must be one of zero, mean\.$"),
])
def test_settings_outside_their_range_are_refused_with_the_reason(change, message):
    with pytest.raises(InputError, match=message):
        SuperpositionConfig.from_settings({**TINY, **change})


def test_settings_at_the_ends_of_their_ranges_are_accepted():
    ends = {"n_hidden": 1, "feature_probability": 1.0, "importance_decay": 1.0, "n_samples": 2, "n_instances": 1,
            "train_steps": 1, "batch_size": 1, "n_bootstrap": 1, "log_every": 1, "hidden_activation": "linear", "ablation": "mean"}
    assert SuperpositionConfig.from_settings({**TINY, **ends}).as_dict() == {**TINY, **ends}
    with pytest.raises(InputError, match=r"^separability\.exp_d: missing keys \['lr'\], unknown keys \['n_heads'\]"):
        SuperpositionConfig.from_settings({**{k: v for k, v in TINY.items() if k != "lr"}, "n_heads": 4})
