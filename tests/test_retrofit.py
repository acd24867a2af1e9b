"""Gram regulariser, transport step, conditioning metrics and the continued-training loop."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import default_settings
from weightlab.batches import batch_indices
from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.retrofit.__main__ import main
from weightlab.retrofit.data import token_blocks
from weightlab.retrofit.design import method_settings
from weightlab.retrofit.gram import (
    ActivationCovariance,
    covariance_condition_number,
    ffn_modules,
    ffn_weights,
    gram_condition_number,
    gram_penalty,
    gram_penalty_grad,
    smaller_gram,
    transport_,
)
from weightlab.retrofit.summary import summarise
from weightlab.retrofit.training import RetrofitConfig, measure, retrofit


def orthonormal(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """A matrix with orthonormal columns (tall) or rows (wide)."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64))
    return q if rows >= cols else q.T


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
def test_gram_penalty_is_zero_for_orthogonal_matrices_of_either_shape(shape):
    assert gram_penalty(orthonormal(*shape)).item() == pytest.approx(0.0, abs=1e-20)
    assert gram_penalty(2 * orthonormal(*shape)).item() > 1


def test_the_larger_side_gram_has_a_floor():
    """The original's ||W W^T - I||^2 on a tall W (rank 5 Gram of size 8): never below 8 - 5."""
    q = orthonormal(8, 5)
    naive = (q @ q.T - torch.eye(8, dtype=q.dtype)).pow(2).sum()
    assert naive.item() == pytest.approx(3.0)
    assert smaller_gram(q).shape == (5, 5)


@pytest.mark.parametrize("shape", [(7, 4), (4, 7)])
def test_gram_gradient_matches_autograd(shape):
    w = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    gram_penalty(w).backward()
    torch.testing.assert_close(gram_penalty_grad(w.detach()), w.grad)


def test_conditioning_equals_numpy():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(7, 3)))
    wide = u @ np.diag([1.0, 2.0, 10.0]) @ v.T  # 3 x 7, singular values 1, 2, 10
    for w in (wide, wide.T):
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        expected = np.linalg.cond(gram)
        assert expected == pytest.approx(100.0)
        assert gram_condition_number(torch.tensor(w)) == pytest.approx(expected, rel=1e-9)
    random = rng.normal(size=(20, 50))
    assert gram_condition_number(torch.tensor(random)) == pytest.approx(np.linalg.cond(random @ random.T), rel=1e-6)
    assert gram_condition_number(torch.zeros(3, 5, dtype=torch.float64)) == math.inf


def test_covariance_conditioning_equals_numpy():
    x = np.random.default_rng(1).normal(size=(200, 6)) * np.array([1, 2, 3, 4, 5, 30])
    cov = np.cov(x, rowvar=False)
    assert covariance_condition_number(torch.tensor(cov)) == pytest.approx(np.linalg.cond(cov), rel=1e-9)


def test_transport_keeps_frobenius_norm_and_balances_rows_and_columns():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(12, 30, generator=g, dtype=torch.float64) * torch.logspace(-1, 1, 12, dtype=torch.float64)[:, None]
    w = w * torch.logspace(0, 0.5, 30, dtype=torch.float64)
    norm = w.norm().item()
    spread = lambda norms: (norms.max() / norms.min()).item()  # noqa: E731
    rows_before, cols_before = spread(w.norm(dim=1)), spread(w.norm(dim=0))
    transport_(w)
    assert w.norm().item() == pytest.approx(norm, rel=1e-12)
    assert spread(w.norm(dim=0)) == pytest.approx(1.0, abs=1e-6)  # columns last: equal up to eps
    assert rows_before > 50 and cols_before > 1.5
    assert spread(w.norm(dim=1)) < 1.5  # rows from a 100:1 spread to near balance in one step


def test_activation_covariance_matches_numpy():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.mlp(x)

    model = torch.nn.Sequential(Block())
    x = torch.randn(2, 40, 3, generator=torch.Generator().manual_seed(3)) * torch.tensor([1.0, 3.0, 9.0])
    collector = ActivationCovariance(ffn_modules(model))
    model(x[:1]), model(x[1:])
    collector.remove()
    expected = np.linalg.cond(np.cov(x.reshape(-1, 3).numpy().astype(np.float64), rowvar=False))
    assert collector.condition_numbers() == {"0.mlp": pytest.approx(expected, rel=1e-6)}
    few = ActivationCovariance(ffn_modules(model))
    model(x[:1, :2])
    assert few.condition_numbers() == {"0.mlp": None}  # 2 tokens, 3 dimensions: singular, not reported


class Tokenizer:
    """Word lengths as token ids; like a Hugging Face tokenizer it adds special tokens (here a BOS,
    99) unless told not to."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return type("Encoded", (), {"input_ids": [99] * add_special_tokens + [len(word) for word in text.split()]})()


def test_token_blocks_join_documents_with_eos():
    blocks = token_blocks(Tokenizer(), ["a bb ccc", "dddd e"], seq_len=3)
    assert blocks.tolist() == [[1, 2, 3], [0, 4, 1]]  # the trailing EOS is dropped with the remainder
    assert token_blocks(Tokenizer(), ["a bb ccc", "dddd e"], seq_len=2, max_blocks=1).tolist() == [[1, 2]]
    with pytest.raises(InputError, match="fewer than one block"):
        token_blocks(Tokenizer(), ["a"], seq_len=8)


def test_batches_cover_every_block_once_per_epoch():
    batches = list(batch_indices(10, 5, torch.Generator().manual_seed(0), num_steps=6))
    flat = torch.cat(batches)
    assert len(batches) == 6 and all(sorted(flat[i:i + 10].tolist()) == list(range(10)) for i in (0, 10, 20))


def test_step_counted_batches_keep_the_retrofit_draws_and_epoch_batches_are_unchanged():
    generator = torch.Generator().manual_seed(3)
    reference = torch.cat([torch.randperm(7, generator=generator) for _ in range(3)])[:18].view(6, 3)  # 18 draws: 3 epochs of 7
    assert torch.equal(torch.stack(list(batch_indices(7, 3, torch.Generator().manual_seed(3), num_steps=6))), reference)
    epoch = list(batch_indices(7, 3, torch.Generator().manual_seed(3)))
    assert [len(b) for b in epoch] == [3, 3, 1]
    assert torch.equal(torch.cat(epoch), torch.randperm(7, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(torch.cat(list(batch_indices(7, 3))), torch.arange(7))
    with pytest.raises(ValueError, match="generator"):
        list(batch_indices(7, 3, num_steps=2))


def test_method_settings_turn_off_what_a_method_does_not_use():
    settings = {"lr": 1e-4, "gram_weight": 0.01, "glt_interval": 5}
    assert method_settings("standard", settings) == {"lr": 1e-4, "gram_weight": 0, "glt_interval": 0}
    assert method_settings("gram", settings) == {"lr": 1e-4, "gram_weight": 0.01, "glt_interval": 0}
    assert method_settings("geometry", settings) == settings
    train = default_settings("retrofit", "train")
    overridden = {**{k: v for k, v in train.items() if k != "gram_weight"}, "gram_weight": 0.02}  # a preset's merge order
    assert repr(method_settings("standard", overridden)) == repr(method_settings("standard", train))  # Snakemake sees no change
    for method in ("standard", "gram", "geometry"):
        cfg = settings_dataclass(RetrofitConfig, {"method": method, **method_settings(method, train)}, "retrofit.train")
        assert (cfg.uses_gram, cfg.uses_transport) == (method != "standard", method == "geometry")
    with pytest.raises(InputError, match="unknown retrofit method"):
        settings_dataclass(RetrofitConfig, {"method": "glt", **train}, "retrofit.train")
    with pytest.raises(InputError, match=r"^retrofit\.train: missing keys \['lr'\]"):
        settings_dataclass(RetrofitConfig, {"method": "gram", **{k: v for k, v in train.items() if k != "lr"}}, "retrofit.train")


@pytest.fixture()
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return LlamaForCausalLM(config).float()


def test_measured_perplexity_is_exp_of_the_models_own_loss(tiny_lm):
    blocks = torch.randint(0, 40, (6, 10), generator=torch.Generator().manual_seed(0))
    point = measure(tiny_lm, blocks, torch.device("cpu"), detail=True, batch_size=4)
    with torch.no_grad():
        reference = tiny_lm(input_ids=blocks, labels=blocks).loss.item()
    assert point["loss"] == pytest.approx(reference, rel=1e-5)
    assert point["perplexity"] == pytest.approx(math.exp(reference), rel=1e-5)
    assert (point["ppl"], point["cond"]) == (point["perplexity"], point["conditioning"])  # the original's key names
    assert len(point["conditioning_by_matrix"]) == 6  # gate, up, down in 2 layers
    assert point["conditioning"] == pytest.approx(np.mean(list(point["conditioning_by_matrix"].values())))
    assert point["activation_conditioning"] is not None  # 60 tokens > 16 dimensions


def run(tiny_lm, method, **overrides):
    g = torch.Generator().manual_seed(0)
    train, val = torch.randint(0, 40, (16, 8), generator=g), torch.randint(0, 40, (4, 8), generator=g)
    settings = {**default_settings("retrofit", "train"), "num_steps": 6, "lr": 3e-3, "batch_size": 4, "eval_interval": 4,
                "gram_weight": 1.0, "glt_interval": 3, **overrides}
    cfg = settings_dataclass(RetrofitConfig, {"method": method, **settings}, "retrofit.train")
    return retrofit(tiny_lm, train, val, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))


def test_trajectory_records_every_eval_interval_and_the_end(tiny_lm):
    result = run(tiny_lm, "geometry")
    trajectory = result["trajectory"]
    assert trajectory["steps"] == [0, 4, 6] and result["transports"] == 2
    assert all(len(trajectory[k]) == 3 for k in ("conditioning", "perplexity", "loss", "activation_conditioning"))
    assert result["final"]["perplexity"] == trajectory["perplexity"][-1] and result["initial"]["loss"] == trajectory["loss"][0]
    json.dumps(result)  # serialisable as is


def test_gram_regulariser_lowers_the_penalty_more_than_standard(tiny_lm):
    state = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    standard = run(tiny_lm, "standard")["final"]["gram_penalty"]
    tiny_lm.load_state_dict(state)
    gram = run(tiny_lm, "gram", gram_weight=10.0)
    assert gram["final"]["gram_penalty"] < gram["initial"]["gram_penalty"] and gram["final"]["gram_penalty"] < standard


def test_transport_only_touches_ffn_weights(tiny_lm):
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    for weight in ffn_weights(tiny_lm).values():
        transport_(weight)
    changed = {k for k, v in tiny_lm.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(ffn_weights(tiny_lm))


def result_stub(method, cond, ppl, seconds=100.0):
    point = {"conditioning": cond, "activation_conditioning": 10.0, "perplexity": ppl, "loss": math.log(ppl)}
    return {"method": method, "final": point, "initial": {}, "trajectory": {"steps": [0, 10]}, "timing": {"seconds_per_100_steps": seconds}}


def test_summary_and_table_compare_against_the_baseline(tmp_path, capsys):
    baseline = {"conditioning": 400.0, "activation_conditioning": 10.0, "perplexity": 50.0, "loss": math.log(50.0)}
    results = {"standard": result_stub("standard", 400.0, 40.0), "gram_only": result_stub("gram", 300.0, 45.0),
               "geometry": result_stub("geometry", 200.0, 1e6)}
    summary = summarise(results, baseline)
    assert summary["runs"]["gram_only"]["conditioning_change"] == pytest.approx(-0.25)
    assert summary["runs"]["standard"]["perplexity_change"] == pytest.approx(-0.2)
    assert summary["runs"]["geometry"]["conditioning_improved"] and not summary["runs"]["geometry"]["perplexity_improved"]
    assert (summary["lowest_conditioning"], summary["lowest_perplexity"]) == ("geometry", "standard")
    for name, result in results.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**result, "initial": baseline}))
    assert main(["compare", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "−25.0%" in table and "x0.8" in table and all(name in table for name in ("baseline", *results))
    assert main(["compare", str(tmp_path / "empty")]) == 1
    assert "run the workflow first" in capsys.readouterr().err


def _retrofit_summary(base_ppl=20.0, standard=(-0.02, 19.0), gram=(-0.2, 18.0), geometry=(-0.35, 17.0)):
    runs = {name: {"conditioning_change": change, "final_perplexity": ppl}
            for name, (change, ppl) in (("standard", standard), ("gram_only", gram), ("geometry", geometry))}
    return {"baseline": {"perplexity": base_ppl, "conditioning": 100.0}, "runs": runs}


def test_retrofit_criteria_read_about_with_stated_thresholds_and_gate_on_the_training():
    from weightlab.retrofit.criteria import criteria_json

    held = criteria_json(_retrofit_summary())
    assert held["verdict"] == "held", held["reason"]
    assert [c["kind"] for c in held["criteria"]].count("precondition") == 2
    assert all("(ours)" in c["threshold"] for c in held["criteria"] if c["id"].endswith("conditioning"))
    weak_gram = criteria_json(_retrofit_summary(gram=(-0.05, 18.0)))
    assert weak_gram["verdict"] == "not held" and "gram_lowers_conditioning" in weak_gram["reason"]
    no_learning = criteria_json(_retrofit_summary(standard=(-0.02, 21.0), gram=(0.1, 25.0)))
    assert no_learning["verdict"] == "not testable" and "standard_lowers_validation_loss" in no_learning["reason"]
    assert {c["id"]: c["verdict"] for c in no_learning["criteria"]}["gram_lowers_conditioning"] == "not_testable"
    infinite = criteria_json(_retrofit_summary(base_ppl=float("inf")))
    assert infinite["verdict"] == "not testable" and "baseline_perplexity_finite" in infinite["reason"]
