"""Drift of every trained neuron (the population the norm-matched controls come from), the
held-out loss, the optimizer option and the saved population, on a tiny Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import lora_settings, train_settings
from weightlab.drift.drift import DriftTracker, row_drift
from weightlab.drift.effects import Population
from weightlab.drift.lora import collate, example_losses, make_optimizer, response_loss, train_lora, wrap_lora
from weightlab.drift.report import load_final_drift, load_population, save_final_drift
from weightlab.drift.snip import projection_modules
from weightlab.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=67, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def samples(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = rng.integers(3, 67, size=9).tolist()
        out.append((ids, [-100] * 5 + ids[5:]))
    return out


LORA = lora_settings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "up_proj"))


def trained(optimizer: str = "adam", lr: float = 0.05) -> tuple[torch.nn.Module, dict, DriftTracker]:
    model = tiny_llama()
    initial = {name: m.weight.detach().clone() for name, m in projection_modules(model).items()}
    peft_model = wrap_lora(model, LORA, seed=0)
    groups = {"snip_top": {"model.layers.0.self_attn.q_proj": np.array([0, 3]), "model.layers.1.mlp.up_proj": np.array([5])}}
    tracker = DriftTracker(peft_model, groups)
    settings = train_settings(learning_rate=lr, batch_size=4, max_steps=3, optimizer=optimizer)
    train_lora(peft_model, samples(8, 1), settings, 0, torch.Generator().manual_seed(0))
    return peft_model, initial, tracker


def test_population_is_the_drift_of_every_row_of_every_trained_module_against_the_merged_weights():
    peft_model, initial, tracker = trained()
    population = tracker.population()
    assert population["modules"] == tracker.trained_modules and len(tracker.trained_modules) == 4
    merged = dict(peft_model.merge_and_unload().named_modules())
    offset = 0
    for index, name in enumerate(population["modules"]):
        rows = initial[name].shape[0]
        where = slice(offset, offset + rows)
        assert np.all(population["module_index"][where] == index) and population["row"][where].tolist() == list(range(rows))
        expected = row_drift(initial[name], merged[name].weight.detach())
        for key in ("cosine", "l2", "relative"):
            np.testing.assert_allclose(population[key][where], expected[key], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(population["norm"][where], initial[name].double().norm(dim=1).numpy(), rtol=1e-6)
        offset += rows
    assert offset == len(population["row"]) and np.all(population["l2"] > 0)
    mask = population["in:snip_top"]
    assert mask.sum() == 3
    q = population["modules"].index("model.layers.0.self_attn.q_proj")
    assert sorted(population["row"][mask & (population["module_index"] == q)].tolist()) == [0, 3]


def test_population_round_trips_through_final_drift_npz(tmp_path):
    _, _, tracker = trained()
    population = tracker.population()
    path = tmp_path / "final_drift.npz"
    save_final_drift(path, tracker.measure(), {g: tracker.module_labels(g) for g in tracker.groups}, population)
    final, modules = load_final_drift(path)
    assert set(final) == {"snip_top"} and len(modules["snip_top"]) == 3
    loaded = load_population(path)
    assert loaded["modules"] == population["modules"] and loaded["in:snip_top"].dtype == bool
    pop = Population.from_arrays(loaded)
    np.testing.assert_array_equal(pop.measure("cosine"), population["cosine_distance"])
    assert len(pop) == len(population["row"])


def test_sgd_moves_rows_in_proportion_to_their_gradient_adam_does_not():
    """Adam's per-parameter normalisation: after one step every adapter entry has moved by about
    the learning rate, so rows move alike; SGD moves them by their gradient."""
    spreads = {}
    for optimizer, lr in (("adam", 0.01), ("sgd", 0.5)):
        _, _, tracker = trained(optimizer, lr)
        l2 = tracker.population()["l2"]
        spreads[optimizer] = float(np.std(np.log(l2)))
    assert spreads["sgd"] > spreads["adam"]


def test_unknown_optimizer_is_refused():
    with pytest.raises(InputError, match="optimizer"):
        train_settings(learning_rate=0.1, batch_size=2, optimizer="lion")
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer(params, train_settings(learning_rate=0.1, batch_size=2, optimizer="sgd")), torch.optim.SGD)


def test_example_losses_are_each_examples_mean_response_loss():
    model = tiny_llama()
    examples = samples(3, 2)
    losses = example_losses(model, examples, pad_id=0, batch_size=2)
    for (ids, labels), got in zip(examples, losses):
        expected = response_loss(model, collate([(ids, labels)], 0)).item()
        assert got == pytest.approx(expected, rel=1e-5)


def test_bf16_precision_trains_float32_adapters_like_float32():
    """precision: bf16 runs the passes under bf16 autocast but keeps float32 adapters; the losses
    stay close to float32 training's and fall."""
    histories = {}
    for precision in ("fp32", "bf16"):
        model = wrap_lora(tiny_llama(), LORA, seed=0)
        settings = train_settings(learning_rate=0.05, batch_size=8, max_steps=6, precision=precision)
        histories[precision] = [h["loss"] for h in train_lora(model, samples(8, 1), settings, 0, torch.Generator().manual_seed(0))]
        assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert histories["bf16"][-1] < histories["bf16"][0]
    np.testing.assert_allclose(histories["bf16"], histories["fp32"], rtol=0.05)
    with pytest.raises(InputError, match="precision"):
        train_settings(learning_rate=0.1, batch_size=2, precision="fp8")


# --- LoRA settings and the training loop ---------------------------------------------------------


def test_lora_and_train_settings_convert_their_fields_and_name_the_drift_block():
    from weightlab.drift.lora import LoraSettings, TrainSettings

    lora = LoraSettings.from_settings({"lora_r": 4.0, "lora_alpha": 8, "lora_dropout": 0, "target_modules": ["q_proj"], "other": 1})
    assert lora == LoraSettings(4, 8.0, 0.0, ("q_proj",))
    assert [type(v) for v in (lora.r, lora.alpha, lora.dropout, lora.target_modules)] == [int, float, float, tuple]
    block = {"learning_rate": "0.5", "batch_size": 2.0, "num_epochs": 1, "max_steps": 3.0, "weight_decay": 0, "max_grad_norm": 1,
             "max_length": 9.0, "optimizer": "sgd", "precision": "fp32", "lora_r": 4}
    train = TrainSettings.from_settings(block)
    assert train == TrainSettings(0.5, 2, 1.0, 3, 0.0, 1.0, 9, "sgd", "fp32")
    assert [type(getattr(train, f)) for f in ("learning_rate", "batch_size", "num_epochs", "max_steps", "weight_decay",
                                               "max_grad_norm", "max_length")] == [float, int, float, int, float, float, int]
    with pytest.raises(InputError, match=r"^drift: missing keys \['lora_alpha'"):
        LoraSettings.from_settings({"lora_r": 4, "lora_dropout": 0, "target_modules": ["q_proj"]})
    with pytest.raises(InputError, match=r"^drift: missing keys \['max_grad_norm'\]"):
        TrainSettings.from_settings({k: v for k, v in block.items() if k != "max_grad_norm"})


def test_train_settings_steps_at_their_edges():
    def steps(n, **changes):
        return train_settings(**{"batch_size": 4, "num_epochs": 2.0, "max_steps": 0, **changes}).steps(n)

    assert steps(10) == 5 and steps(10, max_steps=1) == 1 and steps(1) == 1
    assert steps(2, num_epochs=0.5) == 1  # ceil(0.25), at least one step
    assert steps(3, num_epochs=1.0, batch_size=1) == 3
    for n, epochs in ((0, 1.0), (10, 0.0)):
        with pytest.raises(InputError, match="no training steps"):
            steps(n, num_epochs=epochs)


def test_optimizers_take_the_learning_rate_and_weight_decay():
    """One step of each optimizer on a parameter of 1s with gradient 2, by hand: SGD p - lr (g + wd p);
    AdamW p (1 - lr wd) - lr sign(g) (its first step is the gradient's sign)."""
    for optimizer, expected in (("sgd", 1 - 0.1 * (2 + 0.5)), ("adam", 1 * (1 - 0.1 * 0.5) - 0.1)):
        p = torch.nn.Parameter(torch.ones(3))
        opt = make_optimizer([p], train_settings(learning_rate=0.1, weight_decay=0.5, optimizer=optimizer))
        p.grad = torch.full((3,), 2.0)
        opt.step()
        assert torch.allclose(p.detach(), torch.full((3,), expected), atol=1e-6), optimizer


def test_gradients_are_clipped_to_max_grad_norm_and_not_when_it_is_0():
    """SGD with lr 1 moves the adapter by minus its gradient (norm about 0.01 here): clipped at
    0.005 the step is the gradient scaled to norm 0.005; max_grad_norm 0 leaves it unclipped."""
    start = wrap_lora(tiny_llama(), LORA, seed=0)
    before = torch.cat([p.detach().flatten() for p in start.parameters() if p.requires_grad])

    def step(max_grad_norm: float) -> torch.Tensor:
        model = wrap_lora(tiny_llama(), LORA, seed=0)
        settings = train_settings(learning_rate=1.0, batch_size=8, max_steps=1, optimizer="sgd", weight_decay=0.0, max_grad_norm=max_grad_norm)
        train_lora(model, samples(8, 1), settings, 0, torch.Generator().manual_seed(0))
        return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad]) - before

    raw = step(0.0)
    assert raw.norm() > 0.008
    clipped = step(0.005)
    assert clipped.norm().item() == pytest.approx(0.005, rel=1e-3)
    assert torch.allclose(clipped, raw * 0.005 / raw.norm(), rtol=1e-3, atol=1e-8)


def test_train_lora_records_and_calls_back_on_schedule():
    """One record per step (step, loss, seconds, tokens); the callback at step 0, every `interval`
    steps and at the end; interval 0 (the default): the start and the end only; the epoch count
    gives the steps when max_steps is 0."""
    def run(**kwargs):
        calls = []
        model = wrap_lora(tiny_llama(), LORA, seed=0)
        settings = train_settings(learning_rate=0.01, batch_size=2, num_epochs=1.0, max_steps=0)
        history = train_lora(model, samples(6, 1), settings, 0, torch.Generator().manual_seed(0),
                             lambda step, loss: calls.append(step), **kwargs)
        return history, calls

    history, calls = run()
    assert calls == [0, 3] and [r["step"] for r in history] == [1, 2, 3]
    assert all(set(r) == {"step", "loss", "seconds", "tokens"} and 0 <= r["seconds"] < 60 and r["tokens"] == 2 * 9 for r in history)
    assert run(interval=0)[1] == [0, 3] and run(interval=1)[1] == [0, 1, 2, 3] and run(interval=2)[1] == [0, 2, 3]


def test_wrap_lora_is_a_causal_lm_adapter_with_the_settings_dropout_and_seed_0_by_default():
    lora = lora_settings(r=2, alpha=4.0, dropout=0.25, target_modules=("q_proj",))
    wrapped = wrap_lora(tiny_llama(), lora)
    assert type(wrapped).__name__ == "PeftModelForCausalLM"
    layer = wrapped.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.lora_dropout["default"].p == 0.25
    again = wrap_lora(tiny_llama(), lora, seed=0).base_model.model.model.layers[0].self_attn.q_proj
    assert torch.equal(layer.lora_A["default"].weight, again.lora_A["default"].weight)


# --- drift: aggregates, a tracker made mid-training, DoRA and Conv1D-style bases ------------------


def test_aggregate_gives_every_statistic_of_the_finite_values():
    from weightlab.drift.drift import aggregate

    assert aggregate(np.array([5.0, 1.0, np.nan, 3.0, 2.0, 4.0, np.inf])) == {
        "n": 5, "n_nan": 2, "mean": 3.0, "std": pytest.approx(np.sqrt(2.0)), "median": 3.0, "q05": pytest.approx(1.2),
        "q25": 2.0, "q75": 4.0, "q95": pytest.approx(4.8), "min": 1.0, "max": 5.0}


def _merged_rows(peft_model, name: str) -> torch.Tensor:
    """The rows (output neurons) of a module's merged weight W + (alpha/r) B A, from a merged copy."""
    import copy

    merged = dict(copy.deepcopy(peft_model).merge_and_unload().named_modules())[name].weight.detach().double()
    return merged.T if merged.shape[0] != merged.shape[1] and "c_attn" in name else merged


def test_a_tracker_made_mid_training_measures_drift_from_the_weights_it_was_made_at():
    """B is no longer 0 when the tracker is made: drift is against the merged weights of that
    moment, for the tracked groups (a module with no rows in a group is skipped) and the population."""
    model = wrap_lora(tiny_llama(), LORA, seed=0)
    settings = train_settings(learning_rate=0.05, batch_size=4, max_steps=2)
    train_lora(model, samples(8, 1), settings, 0, torch.Generator().manual_seed(0))
    q0, q1 = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
    start = {name: _merged_rows(model, name) for name in (q0, q1)}
    tracker = DriftTracker(model, {"g": {q0: np.array([], dtype=np.int64), q1: np.array([2, 5])}})
    train_lora(model, samples(8, 2), settings, 0, torch.Generator().manual_seed(1))
    now = _merged_rows(model, q1)
    expected = row_drift(start[q1][[2, 5]], now[[2, 5]])
    measured = tracker.measure()["g"]
    population = tracker.population()
    where = population["module_index"] == population["modules"].index(q1)
    full = row_drift(start[q1], now)
    for key in ("cosine", "l2", "relative", "norm"):
        np.testing.assert_allclose(measured[key], expected[key], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(population[key][where], full[key], rtol=1e-4, atol=1e-6)
    assert np.all(measured["l2"] > 0)


def test_drift_refuses_a_dora_adapter():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], use_dora=True))
    with pytest.raises(InputError, match="DoRA"):
        DriftTracker(model, {"g": {"model.layers.0.self_attn.q_proj": np.array([1])}})


def test_drift_of_a_conv1d_style_base_is_by_output_neuron():
    """GPT-2's Conv1D stores W as (in, out) (fan_in_fan_out): the tracked rows are output neurons,
    the rows of the merged weight's transpose, for the groups and the population."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True))
    name = "transformer.h.0.attn.c_attn"
    start = _merged_rows(model, name)
    assert start.shape == (24, 8)  # 3 x 8 output neurons of 8 inputs
    tracker = DriftTracker(model, {"g": {name: np.array([1, 20])}})
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_B") and "default" in module.lora_B:
                module.lora_B["default"].weight.normal_()
    now = _merged_rows(model, name)
    measured, population = tracker.measure()["g"], tracker.population()
    for key in ("cosine", "l2", "norm"):
        np.testing.assert_allclose(measured[key], row_drift(start[[1, 20]], now[[1, 20]])[key], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(population[key], row_drift(start, now)[key], rtol=1e-4, atol=1e-6)
