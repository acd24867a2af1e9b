"""Experiment A's clamps after the final LayerNorm, their per-step factors, the per-head G, the task's
fixed-offset ceiling and per-layer freezing, each on a constructed case whose answer is known."""

import math

import pytest
import torch

from conftest import default_settings
from weightlab.errors import InputError
from weightlab.separability import constraint as exp_a
from weightlab.separability.clamps import Clamp, calibration_from_control, clamp_for, factor_summary, mean_preserving_clamp
from weightlab.separability.freeze import HeadFreeze
from weightlab.separability.observables import PatternHistory, head_plasticity
from weightlab.separability.task import (
    InterleavedData,
    fixed_offset_accuracies,
    fixed_offset_ceiling,
    interleaved_sequences,
    last_position_accuracy,
    oracle_predictions,
)
from weightlab.separability.toy import ToyConfig, ToyTransformer


def _exp_a_config(settings):
    """Experiment A's settings as the rule builds them: config.yaml's block with the test's changes."""
    return exp_a.ConstraintConfig.from_settings({**default_settings("separability", "exp_a"), **settings})


def small_model(n_layers: int = 2) -> ToyTransformer:
    torch.manual_seed(0)
    return ToyTransformer(ToyConfig(d_vocab=32, n_ctx=16, d_model=16, n_heads=4, d_head=4, n_layers=n_layers, d_mlp=16))


def test_a_naive_clamp_after_the_final_norm_scales_the_logits():
    """After ln_final the only thing left is the unembedding (logits = x W_U + b_U, b_U = 0 at
    initialisation): the naive clamp's one factor f multiplies every logit by f, which the final
    LayerNorm cannot undo; its logged factor is f."""
    model = small_model()
    tokens = torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens, names_filter="ln_final.hook_out")
    norm = float(cache["ln_final.hook_out"].norm(dim=-1).mean())
    plain = model(tokens)
    for factor in (0.25, 3.0):
        clamp = Clamp("naive", "ln_final.hook_out", factor * norm)
        clamped = model.run_with_hooks(tokens, fwd_hooks=[clamp.fwd_hook()])
        assert torch.allclose(clamped, factor * plain, rtol=1e-4, atol=1e-5)
        assert clamp.last_factor == pytest.approx(factor, rel=1e-5)
    # the same clamp on the residual stream just before ln_final is divided out again
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    before = float(cache["blocks.1.hook_resid_post"].norm(dim=-1).mean())
    undone = model.run_with_hooks(tokens, fwd_hooks=[Clamp("naive", "blocks.1.hook_resid_post", 3.0 * before).fwd_hook()])
    assert torch.allclose(undone, plain, atol=1e-3)


def test_a_clamp_at_an_attention_output_changes_its_weight_against_the_embeddings():
    """At blocks.0.hook_attn_out the factor changes the heads' share of the residual stream, which no
    LayerNorm undoes: the logits change."""
    model = small_model()
    tokens = torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(2))
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_attn_out")
    norm = float(cache["blocks.0.hook_attn_out"].norm(dim=-1).mean())
    clamp = Clamp("naive", "blocks.0.hook_attn_out", 5.0 * norm)
    clamped = model.run_with_hooks(tokens, fwd_hooks=[clamp.fwd_hook()])
    assert clamp.last_factor == pytest.approx(5.0, rel=1e-5)
    assert float((clamped - model(tokens)).detach().abs().max()) > 1e-2


def test_factor_summary_says_whether_the_clamp_acts():
    idle = factor_summary([1.0, 1.01, 0.99, 1.02], min_effect=0.05)
    assert idle["acts"] is False and idle["median"] == pytest.approx(1.005)
    acting = factor_summary([0.5, 0.6, 1.0, 2.0, 2.0], min_effect=0.05)
    assert acting["acts"] is True and acting["median_abs_log"] == pytest.approx(math.log(2.0))
    assert acting["fraction_acting"] == pytest.approx(0.8) and acting["min"] == 0.5 and acting["max"] == 2.0
    assert factor_summary([], 0.05) == {"n_steps": 0, "acts": None}


def test_head_g_is_one_for_unmoved_routing_and_falls_when_a_head_moves():
    """Two heads over 4 keys: head 0 keeps its pattern, head 1 moves from attending to key 0 to key 3
    (disjoint supports: JS distance 1) — G is 1 for head 0 and 0 for head 1; half-way it is between."""
    before = torch.zeros(2, 2, 4, 4)
    before[..., 0, :] = torch.tensor([0.25, 0.25, 0.25, 0.25])
    before[:, :, 1:, 0] = 1.0
    after = before.clone()
    after[:, 1, 1:] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    after[:, 1, 0] = before[:, 1, 0]
    g = head_plasticity(before, after)
    assert g[0].item() == pytest.approx(1.0)
    assert 0.0 <= g[1].item() < 0.35  # 3 of 4 rows moved to a disjoint key
    half = before.clone()
    half[:, 1, 1:] = torch.tensor([0.5, 0.0, 0.0, 0.5])
    assert g[1].item() < head_plasticity(before, half)[1].item() < 1.0


def test_pattern_history_compares_with_the_latest_pattern_a_window_old():
    history = PatternHistory(window=500)
    assert history.reference(0) is None
    for step in (0, 100, 400, 600):
        history.add(step, torch.full((1,), float(step)))
    assert history.reference(700).item() == 100.0  # 700 - 100 >= 500, 700 - 400 < 500
    assert history.reference(300).item() == 0.0  # nothing 500 steps old: the oldest


def test_fixed_offset_ceiling_on_streams_of_known_periods():
    """Both streams of period 3 (a fixed offset of 6 always right) or of periods 2 and 3 in the target's
    stream alternately: offset 12 (a multiple of both) is the best copy; offset 6 is right only for 3."""
    def data(periods: list[int]) -> InterleavedData:
        rows = []
        for i, p in enumerate(periods):
            pattern = [10 * i + k for k in range(p)]
            stream = [pattern[j % p] for j in range(9)]
            rows.append([stream[j // 2] + (0 if j % 2 == 0 else 500) for j in range(17)])
        tokens = torch.tensor(rows)
        return InterleavedData(tokens, torch.tensor([[p, p] for p in periods]))

    assert fixed_offset_ceiling(data([3, 3, 3])) == {"offset": 6, "accuracy": 1.0}  # 6 and 12 tie: the shorter copy
    mixed = data([2, 3, 2, 3])
    accuracies = fixed_offset_accuracies(mixed)
    assert list(accuracies) == list(range(1, 17))  # every offset the 16 inputs allow
    assert accuracies[12] == 1.0 and accuracies[6] == 0.5 and accuracies[4] == 0.5
    assert fixed_offset_ceiling(mixed) == {"offset": 12, "accuracy": 1.0}


def test_head_freeze_freezes_the_named_heads_of_every_named_layer():
    model = small_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    freeze = HeadFreeze(model, [1, 2, 3], layers=[0, 1])
    assert freeze.frozen_units() == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(3))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).reshape(-1, 32), tokens[:, 1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        freeze.restore()
    state = model.state_dict()
    for layer in (0, 1):
        assert torch.equal(state[f"blocks.{layer}.attn.W_Q"][1:], initial[f"blocks.{layer}.attn.W_Q"][1:])
        assert not torch.equal(state[f"blocks.{layer}.attn.W_Q"][0], initial[f"blocks.{layer}.attn.W_Q"][0])
    assert freeze.report()["frozen_slices_identical"] is True
    # weights, not routing: the embeddings train, so a frozen head's pattern moves
    assert not torch.equal(state["embed.W_E"], initial["embed.W_E"])


def test_config_names_layers_that_exist():
    settings = dict(vocab_size=64, seq_len=16, d_model=32, n_heads=4, d_head=8, d_mlp=32, n_train=64, n_heldout=64,
                    batch_size=32, n_layers=2, frozen_layers=[2])
    with pytest.raises(InputError, match="frozen_layers"):
        _exp_a_config(settings)


def _freeze_step(model: ToyTransformer) -> None:
    """One backward pass of the next-token loss (gradients only, no step)."""
    tokens = torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(4))
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(tokens[:, :-1]).reshape(-1, 32), tokens[:, 1:].reshape(-1)).backward()


def test_mean_preserving_clamp_keeps_the_mean_vector_and_rescales_the_centred_part():
    """Tokens m ± c (mean vector m, centred part ±c of std s): the clamp to 2s gives m ± 2c exactly, and
    its logged factor is 2; the naive clamp's factor is the target over the mean token norm."""
    m, c = torch.tensor([3.0, -1.0]), torch.tensor([1.0, 2.0])
    resid = torch.stack([m + c, m - c, m + c, m - c]).reshape(2, 2, 2)
    s = float(torch.stack([c, -c, c, -c]).std())
    expected = torch.stack([m + 2 * c, m - 2 * c, m + 2 * c, m - 2 * c]).reshape(2, 2, 2)
    assert torch.allclose(mean_preserving_clamp(resid, 2 * s), expected, atol=1e-6)
    clamp = Clamp("mean_preserving", "blocks.0.hook_attn_out", 2 * s)
    assert torch.allclose(clamp(resid), expected, atol=1e-6) and clamp.last_factor == pytest.approx(2.0)
    naive = Clamp("naive", "ln_final.hook_out", 1.0)
    norms = torch.stack([m + c, m - c]).norm(dim=-1)
    naive(resid)
    assert naive.last_factor == pytest.approx(1.0 / float(norms.mean()))


def test_clamp_for_builds_each_conditions_clamp_from_the_calibration():
    """The kind from the condition, the target from its own calibration key, the site: the hook
    asked for, else the calibration's clamp_hook, else the hook it was calibrated on; describe()
    names the target by its key (what the audit log stores)."""
    calibration = {"hook": "ln_final.hook_out", "target_norm": 4.0, "healthy_std": 0.5}
    assert clamp_for("control", calibration) is None and clamp_for("constraint", None) is None
    naive = clamp_for("naive_clamp", calibration)
    assert naive == Clamp("naive", "ln_final.hook_out", 4.0)
    assert naive.describe() == {"kind": "naive", "hook": "ln_final.hook_out", "target_norm": 4.0}
    preserving = clamp_for("mean_preserving_clamp", calibration)
    assert preserving == Clamp("mean_preserving", "ln_final.hook_out", 0.5)
    assert preserving.describe() == {"kind": "mean_preserving", "hook": "ln_final.hook_out", "healthy_std": 0.5}
    elsewhere = {**calibration, "clamp_hook": "blocks.0.hook_attn_out"}
    assert clamp_for("naive_clamp", elsewhere).hook == "blocks.0.hook_attn_out"
    assert clamp_for("naive_clamp", elsewhere, hook="blocks.1.hook_attn_out").hook == "blocks.1.hook_attn_out"
    assert clamp_for("mean_preserving_clamp", calibration, hook="blocks.1.hook_attn_out").hook == "blocks.1.hook_attn_out"
    with pytest.raises(InputError, match="calibration"):
        clamp_for("naive_clamp", {})


def test_calibration_from_control_accepts_only_the_same_seeds_positive_calibration():
    calibration = {"hook": "ln_final.hook_out", "target_norm": 4.0, "healthy_std": 0.5, "batches": 2}
    log = {"metadata": {"seed": 1}, "summary": {"calibration": calibration}}
    assert calibration_from_control(log, 1, "ln_final.hook_out") == calibration
    bad = [
        {"metadata": {"seed": 1}},  # no summary
        {"metadata": {"seed": 1}, "summary": {"calibration": None}},
        {"metadata": {"seed": 1}, "summary": {"calibration": {"hook": "ln_final.hook_out", "target_norm": 4.0}}},
        {"summary": {"calibration": calibration}},  # no metadata: no seed
        {**log, "metadata": {"seed": 2}},
        {**log, "summary": {"calibration": {**calibration, "hook": "blocks.0.hook_attn_out"}}},
        *({**log, "summary": {"calibration": {**calibration, key: value}}}
          for key in ("target_norm", "healthy_std") for value in (0, 0.0, -1.0, float("nan"), float("inf"), "4")),
    ]
    for doc in bad:
        with pytest.raises(InputError):
            calibration_from_control(doc, 1, "ln_final.hook_out")


def test_factor_summary_of_factors_exactly_at_the_bound():
    """min_effect 1: factors 2 and 1/2 are exactly log 2 from 1, which is not *more* than the bound:
    no step acts and the median step does not; a factor of 0 counts with |log f| capped at log 1e12."""
    assert factor_summary([2.0, 0.5, 1.0], min_effect=1.0) == {
        "n_steps": 3, "min": 0.5, "median": 1.0, "max": 2.0, "median_abs_log": math.log(2.0),
        "fraction_acting": 0.0, "min_effect": 1.0, "acts": False,
    }
    zero = factor_summary([0.0], min_effect=0.05)
    assert zero["median_abs_log"] == pytest.approx(math.log(1e12)) and zero["acts"] is True


def test_head_freeze_checks_heads_and_layers_and_without_heads_freezes_nothing():
    one_layer = small_model(n_layers=1)  # the original's model has one layer
    freeze = HeadFreeze(one_layer, [0])
    assert freeze.frozen_units() == [(0, 0)] and freeze.free == [1, 2, 3]
    for heads, layers in (([4], [0]), ([-1], [0]), ([0], [1]), ([0], [-1])):
        with pytest.raises(InputError):
            HeadFreeze(one_layer, heads, layers)
    model = small_model()
    nothing = HeadFreeze(model, [], layers=[0, 1])  # the unconstrained conditions
    assert nothing.layers == [] and nothing.params == {} and nothing.frozen_units() == []
    _freeze_step(model)
    assert nothing.report() == {"frozen_slices_identical": None, "max_abs_change_frozen": None, "max_abs_change_free": None}


def test_head_freeze_remove_lets_the_frozen_heads_train_again():
    model = small_model()
    freeze = HeadFreeze(model, [0], layers=[1])
    _freeze_step(model)
    grad = model.blocks[1].attn.W_Q.grad
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[1]) > 0
    freeze.remove()
    freeze.remove()  # a second remove does nothing
    _freeze_step(model)
    assert torch.count_nonzero(model.blocks[1].attn.W_Q.grad[0]) > 0


def test_oracle_copies_one_period_back_and_marks_the_unpredictable_targets():
    """Stream A (even positions) 1 2 1 2 1, period 2; stream B (odd) 5 6 7 5, period 3. Targets 1..8;
    a target is predictable once its stream has shown one period; elsewhere the oracle says -1."""
    data = InterleavedData(torch.tensor([[1, 5, 2, 6, 1, 7, 2, 5, 1]]), torch.tensor([[2, 3]]))
    assert oracle_predictions(data).tolist() == [[-1, -1, -1, 1, -1, 2, 5, 1]]


def test_interleaved_sequences_draw_every_token_and_period():
    data = interleaved_sequences(600, 15, 4, torch.Generator().manual_seed(0))
    counts = torch.bincount(data.tokens.flatten(), minlength=4).float() / data.tokens.numel()
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.03)  # uniform over the vocabulary, token 0 too
    assert sorted(set(data.periods.flatten().tolist())) == [2, 3, 4, 5, 6, 7]
    assert torch.equal(oracle_predictions(data)[:, -1], data.targets[:, -1])


def test_psi_reads_the_last_position_only():
    targets = torch.tensor([[0, 1, 2], [0, 1, 3]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 0, 2], [1, 0, 3]]), 4).float()
    assert last_position_accuracy(logits, targets) == 1.0
    assert last_position_accuracy(logits, torch.tensor([[0, 1, 1], [0, 1, 3]])) == 0.5
