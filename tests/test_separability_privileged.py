"""Experiment D's privileged basis and its superposition precondition, on constructed models."""

import math

import pytest
import torch

from weightlab.separability.superposition import (
    ToyModel,
    ablation_ratios,
    superposition_measures,
    suppressor_mask,
    unit_variances,
)


def planted(epsilon: float = 0.05, large: float = 10.0) -> ToyModel:
    """A ReLU-hidden-layer model with two features and three neurons: neuron 0 carries feature 0;
    neuron 1 reads ``L x1 − ε x0 > 0`` (feature 1 is always on) and writes the inhibition
    ``−ε h1 ≈ −ε L`` into output 0, which the output ReLU clips (its write into output 1 is cancelled
    by the bias); neuron 2 reads ``−x0 ≤ 0``, so the hidden ReLU silences it: a neuron without a role."""
    model = ToyModel(1, 2, 3, hidden_activation="relu")
    with torch.no_grad():
        model.W.copy_(torch.tensor([[[1.0, 0.0], [-epsilon, large], [-1.0, 0.0]]]))
        model.b.copy_(torch.tensor([[0.0, -large**2]]))
    return model


def inputs(n: int = 20000) -> torch.Tensor:
    x0 = torch.rand(n, 1, generator=torch.Generator().manual_seed(0))
    return torch.stack([x0, torch.ones_like(x0)], dim=-1)


def test_a_planted_suppressor_in_a_privileged_basis_is_found():
    model, x = planted(), inputs()
    ratios = ablation_ratios(model, x, "zero")[0]
    assert suppressor_mask(ratios, 1.5).tolist() == [False, True, False]
    t = 0.5 / 1.0025  # out0 = ReLU(1.0025 x0 − 0.5) intact, x0 with neuron 1 ablated
    baseline = 1.0025**2 * ((1 - t) ** 3 / 3 - ((1 - t) ** 2 / 2) ** 2)
    assert ratios[1].item() == pytest.approx((1 / 12) / baseline, rel=0.05)
    assert ratios[2].item() == pytest.approx(1.0, abs=1e-12)  # the silenced neuron: no effect, no variance
    assert unit_variances(model, x)[0, 2].item() == 0.0


def test_the_relu_hidden_layer_makes_the_basis_privileged():
    """Rotating the hidden space (W -> R W) leaves the ReLU output model's function unchanged and
    changes the ReLU-hidden-layer model's."""
    torch.manual_seed(0)
    x = torch.rand(256, 1, 6) * (torch.rand(256, 1, 6) < 0.3)
    angle = 0.7
    rotation = torch.eye(3)
    rotation[:2, :2] = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for activation, invariant in (("linear", True), ("relu", False)):
        model = ToyModel(1, 6, 3, torch.Generator().manual_seed(1), hidden_activation=activation)
        rotated = ToyModel(1, 6, 3, hidden_activation=activation)
        with torch.no_grad():
            rotated.W.copy_(rotation @ model.W)
            rotated.b.copy_(model.b)
        assert torch.allclose(model(x), rotated(x), atol=1e-5) is invariant, activation


def test_superposition_precondition_counts_represented_features_and_their_interference():
    # five unit features on a pentagon in two dimensions: 5 > 2 represented, each interfering
    angles = torch.arange(5) * 2 * math.pi / 5
    pentagon = torch.stack([torch.cos(angles), torch.sin(angles)])[None]
    # two features kept orthogonally, three dropped (norm 0.1): no superposition
    orthogonal = torch.zeros(1, 2, 5)
    orthogonal[0, 0, 0] = orthogonal[0, 1, 1] = 1.0
    orthogonal[0, :, 2:] = 0.1 / math.sqrt(2)
    result = superposition_measures(torch.cat([pentagon, orthogonal]))
    first, second = result["instances"]
    assert first["n_represented"] == 5 and first["in_superposition"] is True
    # interference of a pentagon feature: Σ_j cos²(θ_ij) over the other four = 2 cos²(72°) + 2 cos²(144°) = 1.5
    assert first["mean_interference"] == pytest.approx(1.5, rel=1e-6)
    assert second["n_represented"] == 2 and second["in_superposition"] is False
    assert second["represented"] == [0, 1]
    assert result["n_instances_in_superposition"] == 1 and result["holds"] is False
    assert superposition_measures(pentagon)["holds"] is True
