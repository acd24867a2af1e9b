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
