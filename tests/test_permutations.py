"""Weight matching recovers a planted permutation; a permuted net computes the same function."""

import numpy as np
import pytest
import torch

from weightlab.errors import InputError
from weightlab.rebasin.models import ConvNet
from weightlab.rebasin.paths import align
from weightlab.rebasin.permutations import PermutationSpec, apply_permutation, dense, weight_matching


def random_perms(spec: PermutationSpec, state, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {p: rng.permutation(state[axes[0][0]].shape[axes[0][1]]) for p, axes in spec.perm_to_axes.items()}


def randomised_convnet(norm: str, seed: int = 0) -> ConvNet:
    torch.manual_seed(seed)
    model = ConvNet(width=8, hidden=24, norm=norm)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    return model.eval()


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_permuted_convnet_computes_the_same_function(norm):
    model = randomised_convnet(norm)
    spec = model.permutation_spec()
    state = model.state_dict()
    permuted = ConvNet(width=8, hidden=24, norm=norm).eval()
    permuted.load_state_dict(apply_permutation(spec, random_perms(spec, state, 1), state))
    x = torch.randn(5, 3, 32, 32)
    assert not torch.equal(permuted.convs[0].weight, model.convs[0].weight)
    torch.testing.assert_close(permuted(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_weight_matching_recovers_a_planted_permutation_exactly(norm):
    model = randomised_convnet(norm, seed=3)
    spec = model.permutation_spec()
    state = model.state_dict()
    shuffled = ConvNet(width=8, hidden=24, norm=norm).eval()
    shuffled.load_state_dict(apply_permutation(spec, random_perms(spec, state, 7), state))
    aligned, match = align(model, shuffled)
    for name, tensor in state.items():
        assert torch.equal(aligned[name], tensor), name
    assert match.iterations >= 2  # one sweep that moves units, one that confirms nothing improves


def test_matching_objective_never_decreases_and_beats_identity():
    torch.manual_seed(0)
    a, b = ConvNet(width=8, hidden=16), ConvNet(width=8, hidden=16)
    trainable = {n for n, _ in a.named_parameters()}
    params_a = {k: v for k, v in a.state_dict().items() if k in trainable}
    params_b = {k: v for k, v in b.state_dict().items() if k in trainable}
    match = weight_matching(a.permutation_spec(), params_a, params_b)
    history = match.objective_history
    assert all(later >= earlier - 1e-9 for earlier, later in zip(history, history[1:]))
    identity = sum(float((params_a[k].double() * params_b[k].double()).sum()) for k in params_a)
    assert match.objective > identity


def test_two_layer_mlp_by_hand():
    # hidden unit i of B is unit perm[i] of A: matching must find the inverse.
    spec = PermutationSpec({**dense("l1", None, "P"), **dense("l2", "P", None)})
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=(2, 6))
    perm = np.array([3, 0, 5, 1, 4, 2])
    a = {"l1.weight": torch.tensor(w1), "l1.bias": torch.tensor(b1), "l2.weight": torch.tensor(w2), "l2.bias": torch.zeros(2, dtype=torch.float64)}
    b = {"l1.weight": torch.tensor(w1[perm]), "l1.bias": torch.tensor(b1[perm]), "l2.weight": torch.tensor(w2[:, perm]), "l2.bias": a["l2.bias"]}
    match = weight_matching(spec, a, b)
    assert np.array_equal(perm[match.perms["P"]], np.arange(6))


def test_spec_that_does_not_fit_names_the_entries():
    model = ConvNet(width=4, hidden=8)
    spec = model.permutation_spec()
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(2)
    del state["fc2.bias"]
    with pytest.raises(InputError, match=r"extra\.weight.*fc2\.bias"):
        spec.check(state)
