"""Retrofit science on constructed cases with known answers, for the survivors of
`benchmarks/mutation.sh retrofit` (benchmarks/mutation_survivors.md): the smaller-side Gram of a
square matrix, transport of a rank-one matrix, thread and token edges, the data blocks, the
summary and its table, the training loop's bookkeeping and the criteria at their thresholds."""

import json
import math

import numpy as np
import pytest
import torch

from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.retrofit.criteria import (
    GEOMETRY_DROP_MIN,
    GRAM_DROP_MIN,
    HYPOTHESIS,
    SOURCE,
    STANDARD_CHANGE_MAX,
    criteria_json,
    retrofit_criteria,
)
from weightlab.retrofit.data import retrofit_data, token_blocks, validation_blocks
from weightlab.retrofit.design import method_settings
from weightlab.retrofit.gram import (
    ActivationCovariance,
    covariance_condition_number,
    ffn_modules,
    ffn_weights,
    gram_condition_number,
    gram_penalty,
    gram_penalty_grad,
    single_threaded,
    smaller_gram,
    total_gram_penalty,
    transport_,
    weight_conditioning,
)
from weightlab.retrofit.summary import _change, comparison_table, load_results, summarise
from weightlab.retrofit.training import RetrofitConfig, _record, _trainable_parameters, measure, retrofit

# ----------------------------------------------------------------------------- the Gram


def test_a_square_matrix_uses_w_w_transposed():
    w = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)  # W W^T = [[5, 2], [2, 1]], W^T W = [[1, 2], [2, 5]]
    assert smaller_gram(w).tolist() == [[5.0, 2.0], [2.0, 1.0]]
    assert gram_penalty(w).item() == pytest.approx(16 + 4 + 4 + 0)
    leaf = w.clone().requires_grad_(True)
    gram_penalty(leaf).backward()
    torch.testing.assert_close(gram_penalty_grad(w), leaf.grad)  # 4 (G - I) W
    assert gram_penalty_grad(w).tolist() == pytest.approx(4 * (torch.tensor([[4.0, 2.0], [2.0, 0.0]], dtype=torch.float64) @ w))
    tall = torch.tensor([[1.0], [2.0]], dtype=torch.float64)  # W^T W = [[5]]: penalty 16, gradient 4 W (5 - 1)
    assert smaller_gram(tall).tolist() == [[5.0]] and gram_penalty(tall).item() == 16.0
    assert gram_penalty_grad(tall).tolist() == [[16.0], [32.0]]
    wide = tall.T  # W W^T = [[5]]: the same
    assert smaller_gram(wide).tolist() == [[5.0]] and gram_penalty_grad(wide).tolist() == [[16.0, 32.0]]


def test_condition_numbers_of_known_spectra():
    w = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert gram_condition_number(w) == pytest.approx(9.0)
    assert gram_condition_number(torch.tensor([[1.0, 0.0], [0.0, 0.0]])) == math.inf  # singular
    assert gram_condition_number(torch.tensor([[2.0, 0.0, 0.0]])) == 1.0


def test_single_threaded_restores_the_thread_count_even_after_an_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), single_threaded():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_transport_makes_a_positive_rank_one_matrix_constant():
    """W = a b^T (positive): rows normalised give b / |b|, columns then 1 / sqrt(m) each, rescaled
    to |W| = |a| |b|: every entry |a| |b| / sqrt(m n)."""
    a, b = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), torch.tensor([3.0, 1.0], dtype=torch.float64)
    w = torch.outer(a, b)
    out = transport_(w)
    assert out is w
    expected = a.norm() * b.norm() / math.sqrt(6)
    assert w.numpy() == pytest.approx(np.full((3, 2), expected.item()), rel=1e-7)
    zero_row = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    transport_(zero_row)  # eps keeps a zero row at zero instead of 0 / 0
    assert torch.isfinite(zero_row).all() and zero_row[0].tolist() == [0.0, 0.0]
    assert zero_row.norm().item() == pytest.approx(math.sqrt(5.0))


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 3))
        self.attn = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.mlp(self.attn(x))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(_Block(), _Block())


def test_ffn_weights_and_modules_are_the_mlp_matrices_only():
    model = _model()
    assert sorted(ffn_weights(model)) == ["0.mlp.0.weight", "0.mlp.1.weight", "1.mlp.0.weight", "1.mlp.1.weight"]
    assert sorted(ffn_modules(model)) == ["0.mlp", "1.mlp"]
    conditioning = weight_conditioning(model)
    assert sorted(conditioning) == sorted(ffn_weights(model))
    assert conditioning["0.mlp.1.weight"] == pytest.approx(gram_condition_number(model[0].mlp[1].weight))
    assert total_gram_penalty(model) == pytest.approx(sum(gram_penalty(w).item() for w in ffn_weights(model).values()), rel=1e-6)
    with pytest.raises(InputError, match="no 2-D parameters under '.mlp.'"):
        ffn_weights(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_activation_covariance_needs_more_tokens_than_dimensions():
    model = torch.nn.Sequential(_Block())
    x = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(0))
    exactly = ActivationCovariance(ffn_modules(model))
    model(x[:, :3])  # 3 tokens, 3 dimensions
    assert exactly.condition_numbers() == {"0.mlp": None}
    one_more = ActivationCovariance(ffn_modules(model))
    model(x)
    one_more.remove()
    model(x)  # removed: not counted
    assert one_more.count == {"0.mlp": 4}
    inputs = model[0].attn(x).detach().reshape(-1, 3).double().numpy()
    assert one_more.condition_numbers()["0.mlp"] == pytest.approx(np.linalg.cond(np.cov(inputs, rowvar=False)), rel=1e-6)


def test_a_singular_block_is_skipped_and_the_next_still_measured():
    wide, narrow = torch.nn.Linear(6, 1), torch.nn.Linear(3, 1)
    collector = ActivationCovariance({"wide": wide, "narrow": narrow})
    g = torch.Generator().manual_seed(3)
    x_wide, x_narrow = torch.randn(4, 6, generator=g), torch.randn(4, 3, generator=g)
    wide(x_wide)
    narrow(x_narrow)
    result = collector.condition_numbers()
    assert result["wide"] is None  # 4 tokens in 6 dimensions
    assert result["narrow"] == pytest.approx(np.linalg.cond(np.cov(x_narrow.double().numpy(), rowvar=False)), rel=1e-9)


def test_condition_numbers_are_computed_in_float64():
    """[[1000, 999], [999, 1000]]: eigenvalues 1999 and 1, condition number 1999 exactly; float32
    eigenvalues of the same matrix give 1999.06. A 2 x 1001 float32 weight of ones and zeros has
    exactly that Gram matrix (rows of 1000 ones sharing 999)."""
    covariance = torch.tensor([[1000.0, 999.0], [999.0, 1000.0]])
    assert covariance_condition_number(covariance) == pytest.approx(1999.0, rel=1e-9)
    weight = torch.zeros(2, 1001)
    weight[0, :1000] = 1.0
    weight[1, :999] = 1.0
    weight[1, 1000] = 1.0
    assert gram_condition_number(weight) == pytest.approx(1999.0, rel=1e-9)
    assert covariance_condition_number(torch.zeros(2, 2)) == math.inf  # no variance at all
    assert covariance_condition_number(torch.tensor([[1.0, 2.0], [2.0, 1.0]])) == math.inf  # eigenvalue -1: not a covariance


# ----------------------------------------------------------------------------- data


class _Tokenizer:
    def __init__(self, eos=0):
        self.eos_token_id = eos

    def __call__(self, text, add_special_tokens=False):
        assert add_special_tokens is False
        return type("Encoded", (), {"input_ids": [len(word) for word in text.split()]})()


CORPUS = {"sources": {"wiki": {}, "news": {}},
          "train": [{"text": "a bb", "source": "wiki"}, {"text": "ccc", "source": "news"}, {"text": "dddd e ff", "source": "wiki"},
                    {"text": "g", "source": "wiki"}],
          "validation": [{"text": "hh iii", "source": "wiki"}, {"text": "jjjj", "source": "news"}, {"text": "k ll", "source": "wiki"}]}


def test_token_blocks_without_eos_and_the_early_stop():
    assert token_blocks(_Tokenizer(eos=None), ["a bb ccc", "dddd"], seq_len=2).tolist() == [[1, 2], [3, 4]]
    blocks = token_blocks(_Tokenizer(), ["a bb", "ccc", "dddd"], seq_len=3, max_blocks=1)  # stops once 3 tokens are in
    assert blocks.tolist() == [[1, 2, 0]] and blocks.dtype == torch.long
    assert token_blocks(_Tokenizer(), ["a bb ccc dddd e"], seq_len=2, max_blocks=5).tolist() == [[1, 2], [3, 4], [1, 0]]


def test_retrofit_data_takes_one_source_and_describes_it():
    train, validation, info = retrofit_data(_Tokenizer(), CORPUS, "wiki", seq_len=2, eval_sequences=2, max_docs=2)
    assert train.tolist() == [[1, 2], [0, 4], [1, 2]]  # "a bb" EOS "dddd e ff" EOS: 1 2 0 4 1 2 0 -> 3 blocks of 2
    assert validation.tolist() == [[2, 3], [0, 1]]
    assert info == {"corpus": "wiki", "train_documents": 2, "seq_len": 2, "train_blocks": 3, "validation_blocks": 2,
                    "validation_tokens": 4}
    all_docs = retrofit_data(_Tokenizer(), CORPUS, "wiki", seq_len=2, eval_sequences=1)
    assert all_docs[2]["train_documents"] == 3 and all_docs[1].tolist() == [[2, 3]]
    assert validation_blocks(_Tokenizer(), CORPUS, "news", 2, 5).tolist() == [[4, 0]]


# ----------------------------------------------------------------------------- the summary


def _result(method, cond, ppl, seconds=250.0, steps=(0, 10, 20), **extra):
    point = {"conditioning": cond, "activation_conditioning": 5.0, "perplexity": ppl, "loss": math.log(ppl)}
    return {"method": method, "final": point, "initial": {}, "trajectory": {"steps": list(steps)},
            "timing": {"seconds_per_100_steps": seconds}, **extra}


BASELINE = {"conditioning": 1000.0, "activation_conditioning": 4.0, "perplexity": 20.0, "loss": math.log(20.0)}


def test_summary_of_known_runs():
    results = {"standard": _result("standard", 1000.0, 19.0), "geometry": _result("geometry", 600.0, 21.0, transports=4)}
    summary = summarise(results, BASELINE)
    assert summary["baseline"] == BASELINE
    geometry = summary["runs"]["geometry"]
    assert geometry == {
        "method": "geometry", "steps": 20, "transports": 4, "final_conditioning": 600.0, "final_activation_conditioning": 5.0,
        "final_perplexity": 21.0, "final_loss": pytest.approx(math.log(21.0)), "conditioning_change": pytest.approx(-0.4),
        "activation_conditioning_change": pytest.approx(0.25), "perplexity_change": pytest.approx(0.05),
        "loss_change": pytest.approx((math.log(21.0) - math.log(20.0)) / math.log(20.0)), "conditioning_improved": True,
        "perplexity_improved": False, "seconds_per_100_steps": 250.0,
    }
    standard = summary["runs"]["standard"]
    assert standard["transports"] == 0 and not standard["conditioning_improved"] and standard["perplexity_improved"]
    assert standard["conditioning_change"] == 0.0
    assert (summary["lowest_conditioning"], summary["lowest_perplexity"]) == ("geometry", "standard")
    assert summarise({}, BASELINE)["lowest_conditioning"] is None


def test_relative_changes_against_a_baseline_that_has_none():
    for initial in (0.0, math.inf, math.nan):
        baseline = dict(BASELINE, conditioning=initial)
        assert summarise({"standard": _result("standard", 10.0, 19.0)}, baseline)["runs"]["standard"]["conditioning_change"] is None
    assert _change(None, 2.0) is None and _change(3.0, None) is None and _change(3.0, -2.0) == -2.5
    assert _change(3.0, 2.0) == 0.5 and _change(2.0, 2.0) == 0.0


def test_the_comparison_table_as_printed():
    summary = summarise({"standard": _result("standard", 1250.0, 19.0), "geometry": _result("geometry", 600.0, 21.0, seconds=99.6)},
                        BASELINE)
    summary["runs"]["geometry"]["final_activation_conditioning"] = None
    lines = comparison_table(summary).splitlines()
    header = f"{'method':<11}{'steps':>6}{'FFN Gram cond':>15}{'change':>9}{'act. cov cond':>15}{'val PPL':>11}{'PPL ratio':>11}{'s/100 steps':>13}"
    assert lines[0] == header and lines[1] == "-" * len(header)
    assert lines[2] == f"{'baseline':<11}{0:>6}{'1,000.0':>15}{'':>9}{'4':>15}{'20.00':>11}{'':>11}{'':>13}"
    assert lines[3] == f"{'standard':<11}{20:>6}{'1,250.0':>15}{'+25.0%':>9}{'5':>15}{'19':>11}{'x0.95':>11}{'250':>13}"
    assert lines[4] == f"{'geometry':<11}{20:>6}{'600.0':>15}{'−40.0%':>9}{'—':>15}{'21':>11}{'x1.05':>11}{'100':>13}"
    assert lines[5] == ("change and ratio are against the unmodified baseline; lowest conditioning: geometry; "
                        "lowest perplexity: standard")
    summary["runs"]["geometry"]["perplexity_change"] = None
    assert comparison_table(summary).splitlines()[4][-24:-13].strip() == "—"


def test_results_are_read_with_the_baseline_file_first(tmp_path):
    (tmp_path / "standard.json").write_text(json.dumps(_result("standard", 900.0, 19.0) | {"initial": {"perplexity": 1.0}}))
    (tmp_path / "other.json").write_text(json.dumps(_result("other", 1.0, 1.0)))
    results, baseline = load_results(tmp_path)
    assert list(results) == ["standard"] and baseline == {"perplexity": 1.0}
    (tmp_path / "baseline.json").write_text(json.dumps({"initial": BASELINE}))
    assert load_results(tmp_path)[1] == BASELINE
    with pytest.raises(InputError, match=r"no retrofit results \(standard.json, gram_only.json, geometry.json\)"):
        load_results(tmp_path / "nothing")


# ----------------------------------------------------------------------------- the training loop's bookkeeping


def _config(method, settings):
    """A method's RetrofitConfig as the train script builds it from the retrofit.train block."""
    return settings_dataclass(RetrofitConfig, {"method": method, **method_settings(method, settings)}, "retrofit.train")


def test_retrofit_config_reads_its_fields_and_decides_what_runs():
    settings = {"max_docs": None, "num_steps": 10, "lr": 1e-3, "batch_size": 2, "eval_interval": 5, "gram_weight": 0.5,
                "glt_interval": 3, "weight_decay": 0.1, "trainable": "mlp"}
    cfg = _config("geometry", settings)
    assert cfg == RetrofitConfig("geometry", None, 10, 1e-3, 2, 5, 0.5, 3, 0.1, "mlp")
    assert cfg.uses_gram and cfg.uses_transport
    gram = _config("gram", settings)
    assert gram.uses_gram and not gram.uses_transport
    standard = _config("standard", settings)
    assert not standard.uses_gram and not standard.uses_transport
    off = _config("geometry", settings | {"gram_weight": 0.0, "glt_interval": 0})
    assert not off.uses_gram and not off.uses_transport
    with pytest.raises(InputError, match=r"retrofit\.train: missing keys \['lr'\]"):
        _config("geometry", {k: v for k, v in settings.items() if k != "lr"})
    with pytest.raises(InputError, match="trainable must be 'all' or 'mlp', got 'ffn'"):
        RetrofitConfig("standard", None, 1, 1e-3, 1, 1, 0.0, 0, 0.0, trainable="ffn")


def test_only_the_ffn_weights_train_under_mlp():
    model = _model()
    params = _trainable_parameters(model, "mlp")
    assert {id(p) for p in params} == {id(p) for p in ffn_weights(model).values()}
    assert not model[0].attn.weight.requires_grad and not model[0].mlp[0].bias.requires_grad
    everything = _trainable_parameters(model, "all")
    assert len(everything) == len(list(model.parameters())) and all(p.requires_grad for p in model.parameters())


def test_a_trajectory_point_is_recorded_in_every_column():
    trajectory = {k: [] for k in ("steps", "conditioning", "activation_conditioning", "perplexity", "loss", "gram_penalty",
                                  "train_loss", "seconds")}
    point = {"conditioning": 1.0, "activation_conditioning": 2.0, "perplexity": 3.0, "loss": 4.0, "gram_penalty": 5.0, "x": 6}
    _record(trajectory, 7, point, 0.5, 1.25)
    assert trajectory == {"steps": [7], "conditioning": [1.0], "activation_conditioning": [2.0], "perplexity": [3.0],
                          "loss": [4.0], "gram_penalty": [5.0], "train_loss": [0.5], "seconds": [1.25]}


# ----------------------------------------------------------------------------- the criteria


def _summary(base_ppl=20.0, standard=(0.0, 19.0), gram=(-0.2, 18.0), geometry=(-0.35, 17.0)):
    runs = {name: {"conditioning_change": change, "final_perplexity": ppl}
            for name, value in (("standard", standard), ("gram_only", gram), ("geometry", geometry)) if value is not None
            for change, ppl in [value]}
    return {"baseline": {"perplexity": base_ppl, "conditioning": 100.0}, "runs": runs}


def _verdicts(summary):
    return {c.id: c.verdict for c in retrofit_criteria(summary)}


def test_retrofit_criteria_at_their_thresholds():
    assert (STANDARD_CHANGE_MAX, GRAM_DROP_MIN, GEOMETRY_DROP_MIN) == (0.05, 0.10, 0.20)
    edges = _verdicts(_summary(standard=(0.05, 19.0), gram=(-0.10, 20.0), geometry=(-0.20, 20.0)))
    assert edges == {"baseline_perplexity_finite": "pass", "standard_lowers_validation_loss": "pass",
                     "standard_conditioning_about_unchanged": "pass", "gram_lowers_conditioning": "pass",
                     "geometry_lowers_conditioning": "pass", "gram_only_perplexity_no_worse": "pass",
                     "geometry_perplexity_no_worse": "pass"}
    assert _verdicts(_summary(standard=(-0.05, 19.0)))["standard_conditioning_about_unchanged"] == "pass"
    beyond = _verdicts(_summary(standard=(-0.0501, 19.0), gram=(-0.0999, 20.001), geometry=(-0.1999, 20.001)))
    assert [beyond[k] for k in ("standard_conditioning_about_unchanged", "gram_lowers_conditioning", "geometry_lowers_conditioning",
                                "gram_only_perplexity_no_worse", "geometry_perplexity_no_worse")] == ["fail"] * 5
    assert _verdicts(_summary(standard=(0.0501, 19.0)))["standard_conditioning_about_unchanged"] == "fail"
    assert _verdicts(_summary(standard=(0.0, 20.0)))["standard_lowers_validation_loss"] == "fail"  # equal is not lower


def test_retrofit_criteria_records_their_sources_values_and_reasons():
    criteria = {c.id: c for c in retrofit_criteria(_summary())}
    learns = criteria["standard_lowers_validation_loss"]
    assert learns.value == {"standard": 19.0, "baseline": 20.0} and learns.depends_on == ("baseline_perplexity_finite",)
    assert learns.kind == "precondition" and criteria["baseline_perplexity_finite"].value == 20.0
    gram = criteria["gram_lowers_conditioning"]
    assert gram.value == -0.2 and gram.source == f"{SOURCE}: + Gram Only: Moderate (~15%)" and gram.kind == "expectation"
    assert gram.threshold == "relative change <= −0.1 (ours)"
    assert gram.depends_on == ("baseline_perplexity_finite", "standard_lowers_validation_loss")
    assert criteria["geometry_lowers_conditioning"].threshold == "relative change <= −0.2 (ours)"
    assert criteria["standard_conditioning_about_unchanged"].threshold == "|relative change| <= 0.05 (ours)"
    no_worse = criteria["geometry_perplexity_no_worse"]
    assert no_worse.threshold == "<= baseline perplexity 20" and no_worse.value == 17.0
    assert no_worse.source == f"{SOURCE}: + Full Geometry: ~9.2 PPL from 10.9"
    assert no_worse.statement == "geometry: validation perplexity no worse than the baseline's"
    assert {c.id: c.source for c in criteria.values()} == {  # each expectation quotes its line of the original
        "baseline_perplexity_finite": "ours", "standard_lowers_validation_loss": "ours",
        "standard_conditioning_about_unchanged": f"{SOURCE}: + Standard: Minimal (~3%)",
        "gram_lowers_conditioning": f"{SOURCE}: + Gram Only: Moderate (~15%)",
        "geometry_lowers_conditioning": f"{SOURCE}: + Full Geometry: Good (~30%)",
        "gram_only_perplexity_no_worse": f"{SOURCE}: + Gram Only: ~9.8 PPL from 10.9",
        "geometry_perplexity_no_worse": f"{SOURCE}: + Full Geometry: ~9.2 PPL from 10.9"}
    assert all(c.reason == "" for c in criteria.values())  # every run present: nothing to explain
    missing = {c.id: c for c in retrofit_criteria(_summary(standard=None, gram=None))}
    assert missing["standard_lowers_validation_loss"].verdict == "not_evaluable"
    assert missing["standard_lowers_validation_loss"].reason == "no standard run"
    assert missing["gram_lowers_conditioning"].reason == "no gram_only run" and missing["gram_lowers_conditioning"].value is None
    assert missing["gram_only_perplexity_no_worse"].reason == "no gram_only run"
    assert missing["standard_conditioning_about_unchanged"].reason == "no standard run"
    assert missing["geometry_lowers_conditioning"].reason == "" and missing["geometry_lowers_conditioning"].verdict == "pass"
    unbounded = {c.id: c for c in retrofit_criteria(_summary(base_ppl=None))}
    assert unbounded["baseline_perplexity_finite"].verdict == "fail"
    assert unbounded["standard_lowers_validation_loss"].verdict == "not_evaluable"
    assert unbounded["geometry_perplexity_no_worse"].threshold == "<= baseline" and unbounded["geometry_perplexity_no_worse"].verdict == (
        "not_evaluable")
    assert retrofit_criteria({"baseline": {"perplexity": 20.0}})[1].reason == "no standard run"  # a summary without runs


def test_retrofit_criteria_document():
    document = criteria_json(_summary())
    assert document["study"] == "retrofit" and document["hypothesis"] == HYPOTHESIS and document["verdict"] == "held"
    assert [c["id"] for c in document["criteria"]] == [
        "baseline_perplexity_finite", "standard_lowers_validation_loss", "standard_conditioning_about_unchanged",
        "gram_lowers_conditioning", "geometry_lowers_conditioning", "gram_only_perplexity_no_worse", "geometry_perplexity_no_worse"]


# ----------------------------------------------------------------------------- measuring and training a tiny LM


class _Layer(torch.nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.attn = torch.nn.Linear(width, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, width))


class _TinyLM(torch.nn.Module):
    """Embedding, two residual layers (a linear 'attn', an FFN 'mlp'), a head; HF-style forward."""

    def __init__(self, vocab: int = 11, width: int = 4, hidden: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)
        self.layers = torch.nn.ModuleList([_Layer(width, hidden) for _ in range(2)])
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, input_ids, labels=None):
        from types import SimpleNamespace

        x = self.embed(input_ids)
        for layer in self.layers:
            x = x + layer.mlp(layer.attn(x))
        logits = self.head(x)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return SimpleNamespace(logits=logits, loss=loss)


def test_measure_of_a_tiny_lm_by_hand():
    model = _TinyLM()
    blocks = torch.randint(0, 11, (5, 6), generator=torch.Generator().manual_seed(0))
    point = measure(model, blocks, torch.device("cpu"), batch_size=2)
    with torch.no_grad():
        loss = model(blocks, labels=blocks).loss.item()
        by_matrix = {n: gram_condition_number(w) for n, w in ffn_weights(model).items()}
        inputs = [layer.attn(model.embed(blocks)) for layer in model.layers[:1]]
    assert point["loss"] == pytest.approx(loss, rel=1e-6) and point["perplexity"] == pytest.approx(math.exp(loss), rel=1e-6)
    assert point["tokens"] == 25 and (point["ppl"], point["cond"]) == (point["perplexity"], point["conditioning"])
    assert point["conditioning"] == pytest.approx(np.mean(list(by_matrix.values())))
    assert point["conditioning_median"] == pytest.approx(np.median(list(by_matrix.values())))
    assert point["gram_penalty"] == pytest.approx(total_gram_penalty(model))
    assert "conditioning_by_matrix" not in point and "activation_conditioning_by_layer" not in point
    detail = measure(model, blocks, torch.device("cpu"), detail=True)
    assert detail["conditioning_by_matrix"] == pytest.approx(by_matrix)
    by_layer = detail["activation_conditioning_by_layer"]
    first = inputs[0].reshape(-1, 4).double().numpy()
    assert sorted(by_layer) == ["layers.0.mlp", "layers.1.mlp"]
    assert by_layer["layers.0.mlp"] == pytest.approx(np.linalg.cond(np.cov(first, rowvar=False)), rel=1e-6)
    assert detail["activation_conditioning"] == pytest.approx(np.mean(list(by_layer.values())))
    assert detail["activation_conditioning_median"] == pytest.approx(np.median(list(by_layer.values())))
    model.train()
    measure(model, blocks, torch.device("cpu"))
    assert all(module.training for module in model.modules())  # measure restores the mode it found
    assert not any(module._forward_pre_hooks for module in model.modules())  # the covariance hooks are removed


# the retrofit.train block of the training-loop tests: 5 steps of 2 blocks on _TinyLM
RETROFIT_SETTINGS = {"max_docs": None, "num_steps": 5, "lr": 1e-2, "batch_size": 2, "eval_interval": 2, "gram_weight": 1.0,
                     "glt_interval": 2, "weight_decay": 0.01, "trainable": "all"}


def _retrofit(method, initial=None, **overrides):
    settings = RETROFIT_SETTINGS | overrides
    model = _TinyLM()
    g = torch.Generator().manual_seed(1)
    train, val = torch.randint(0, 11, (6, 6), generator=g), torch.randint(0, 11, (3, 6), generator=g)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = retrofit(model, train, val, _config(method, settings), torch.device("cpu"),
                      torch.Generator().manual_seed(2), initial=initial)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    return result, changed, model


def test_the_training_loop_measures_at_every_interval_and_at_the_end():
    initial = {"conditioning": 1.0, "activation_conditioning": 2.0, "perplexity": 3.0, "loss": 4.0, "gram_penalty": 5.0}
    result, changed, model = _retrofit("geometry", initial=initial)
    trajectory = result["trajectory"]
    assert trajectory["steps"] == [0, 2, 4, 5] and result["method"] == "geometry"
    assert result["initial"] == initial and [trajectory[k][0] for k in ("conditioning", "perplexity", "gram_penalty")] == [1.0, 3.0, 5.0]
    assert trajectory["train_loss"][0] is None and all(isinstance(v, float) for v in trajectory["train_loss"][1:])
    assert result["transports"] == 2  # at steps 2 and 4
    assert "conditioning_by_matrix" in result["final"] and result["final"]["perplexity"] == trajectory["perplexity"][-1]
    timing = result["timing"]
    assert timing["seconds_per_100_steps"] == pytest.approx(100 * timing["train_seconds"] / 5)
    assert timing["eval_seconds"] > 0 and trajectory["seconds"][-1] == timing["train_seconds"]
    assert trajectory["seconds"] == sorted(trajectory["seconds"]) and model.training
    assert result["final"]["loss"] == pytest.approx(measure(model, _val_blocks(), torch.device("cpu"))["loss"])
    assert changed >= set(ffn_weights(model))


def _val_blocks():
    g = torch.Generator().manual_seed(1)
    torch.randint(0, 11, (6, 6), generator=g)
    return torch.randint(0, 11, (3, 6), generator=g)


def test_the_training_loop_measures_the_start_itself_and_trains_only_what_it_is_told():
    result, changed, model = _retrofit("standard", trainable="mlp", eval_interval=10)
    assert result["trajectory"]["steps"] == [0, 5] and result["transports"] == 0
    assert result["initial"]["loss"] == pytest.approx(measure(_TinyLM(), _val_blocks(), torch.device("cpu"))["loss"])
    assert "conditioning_by_matrix" in result["initial"]
    assert changed == set(ffn_weights(model))  # the FFN matrices only: not their biases, not attn, embedding or head
    _, everything, _ = _retrofit("standard")
    assert "embed.weight" in everything and "layers.0.attn.weight" in everything


def test_the_gram_term_moves_the_ffn_weights_by_its_weight():
    plain, _, plain_model = _retrofit("gram", gram_weight=0.0, num_steps=1, eval_interval=1)
    weighted, _, weighted_model = _retrofit("gram", gram_weight=5.0, num_steps=1, eval_interval=1)
    assert weighted["final"]["gram_penalty"] < plain["final"]["gram_penalty"]
    # an AdamW step moves each weight by about lr in the direction of -sign(gradient): the Gram term changes that sign
    assert not torch.equal(plain_model.layers[0].mlp[0].weight, weighted_model.layers[0].mlp[0].weight)
    assert torch.equal(plain_model.layers[0].attn.weight, weighted_model.layers[0].attn.weight)


def test_the_training_flops_count_forward_activation_and_trained_weight_gradients():
    # _TinyLM: two layers of a 4x4 'attn' and an FFN of 6x4 and 4x6, a 11x4 head; 5 steps of
    # 2 blocks of 6 tokens; no HF config, so no attention-score term
    linear, ffn, tokens = 2 * (16 + 24 + 24) + 44, 2 * (24 + 24), 5 * 2 * 6
    everything, _, _ = _retrofit("standard")
    assert everything["timing"]["train_flops"] == 6 * linear * tokens
    ffn_only, _, _ = _retrofit("standard", trainable="mlp")
    assert ffn_only["timing"]["train_flops"] == (4 * linear + 2 * ffn) * tokens
    # with a Hugging Face config (2 layers of width 4) the attention scores count too: 2 L S d per token forward
    from types import SimpleNamespace

    from weightlab.retrofit.training import train_flops

    model = _TinyLM()
    model.config = SimpleNamespace(num_hidden_layers=2, hidden_size=4)
    settings = RETROFIT_SETTINGS
    attention = 2 * 2 * 6 * 4
    assert train_flops(model, _config("standard", settings), (6,)) == 3 * (2 * linear + attention) * tokens
    mlp = _config("standard", settings | {"trainable": "mlp"})
    assert train_flops(model, mlp, (6,)) == (2 * (2 * linear + attention) + 2 * ffn) * tokens


def test_one_gram_step_is_adamw_on_the_loss_gradient_plus_the_weighted_gram_gradient():
    """The loop's first step by hand: the batch the generator draws, the LM loss's gradient, the
    Gram term's gradient times gram_weight on every FFN matrix, then AdamW with the configured lr
    and weight decay (neither at AdamW's default)."""
    from weightlab.batches import batch_indices
    from weightlab.retrofit.gram import ffn_weights as ffn_of

    settings = {"lr": 0.02, "weight_decay": 0.3, "gram_weight": 1e-3}  # small: the loss and the Gram term both steer
    result, _, model = _retrofit("gram", num_steps=1, eval_interval=1, **settings)
    expected = _TinyLM()
    g = torch.Generator().manual_seed(1)
    train = torch.randint(0, 11, (6, 6), generator=g)
    index = next(iter(batch_indices(6, 2, torch.Generator().manual_seed(2), num_steps=1)))
    batch = train[index]
    expected(input_ids=batch, labels=batch).loss.backward()
    with torch.no_grad():
        for weight in ffn_of(expected).values():
            weight.grad.add_(1e-3 * gram_penalty_grad(weight))
    optimizer = torch.optim.AdamW(expected.parameters(), lr=0.02, weight_decay=0.3)
    optimizer.step()
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-6), name


def test_the_loops_clock_counts_training_and_evaluation_apart(monkeypatch):
    """A clock that advances 1 s at every reading: each step and each evaluation then take 1 s."""
    import itertools
    import time

    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    result, _, _ = _retrofit("standard", num_steps=5, eval_interval=2)
    timing = result["timing"]
    assert (timing["train_seconds"], timing["eval_seconds"], timing["seconds_per_100_steps"]) == (5.0, 3.0, 100.0)
    assert result["trajectory"]["seconds"] == [0.0, 2.0, 4.0, 5.0]
    one, _, _ = _retrofit("standard", num_steps=1, eval_interval=1)
    assert one["timing"]["seconds_per_100_steps"] == 100.0


def test_a_run_no_better_than_the_baseline_is_not_an_improvement():
    run = {"method": "standard", "final": dict(BASELINE), "trajectory": {"steps": [0, 10]}, "timing": {"seconds_per_100_steps": 1.0}}
    summary = summarise({"standard": run}, BASELINE)["runs"]["standard"]
    assert summary["perplexity_improved"] is False and summary["conditioning_improved"] is False
