"""The FLOP estimates of weightlab.lm.throughput against torch's own FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from weightlab.lm.throughput import from_history, linear_weights, matmul_peak, step_flops, throughput


def _mlp(frozen: bool) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 64, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(64, 16, bias=False))
    for p in model.parameters():
        p.requires_grad_(not frozen)
    return model


def _counted(model: torch.nn.Module, tokens: int, backward: bool) -> int:
    # the embedding output needs a gradient so that the first layer's input gradient is computed,
    # as it is for every layer but the first inside a transformer
    x = model[0](torch.arange(tokens) % 50).detach().requires_grad_(backward)
    with FlopCounterMode(display=False) as counter:
        out = model[1:](x)
        if backward:
            out.square().sum().backward()
    return counter.get_total_flops()


def test_linear_weights_counts_multiplied_weights_not_embeddings():
    assert linear_weights(_mlp(False)) == 16 * 64 + 64 * 16


def test_linear_weights_counts_gpt2s_conv1d_layers():
    from transformers.pytorch_utils import Conv1D

    assert linear_weights(torch.nn.Sequential(Conv1D(12, 8), torch.nn.LayerNorm(12))) == 8 * 12


@pytest.mark.parametrize(("step", "frozen", "backward"), [("forward", False, False), ("full", False, True), ("adapter", True, True)])
def test_step_flops_match_torchs_counter(step, frozen, backward):
    model = _mlp(frozen)
    tokens = 24
    assert step_flops(linear_weights(model), tokens, step) == _counted(model, tokens, backward)


def test_attention_term_is_causal_half_of_scores_and_mixing():
    # QK^T and AV cost 2*S*d each per token per layer; the causal mask halves the average
    assert step_flops(0, 10, "forward", n_layers=2, d_model=8, seq_len=4) == 2 * 2 * 4 * 8 * 10
    assert step_flops(0, 10, "full", n_layers=2, d_model=8, seq_len=4) == 3 * 2 * 2 * 4 * 8 * 10


def test_unknown_step_is_refused():
    with pytest.raises(ValueError, match="step"):
        step_flops(10, 10, "lora")


def test_throughput_record():
    record = throughput(6e9, 2.0, 12.0, torch.bfloat16)
    assert (record.gflops, record.fraction_of_peak, record.dtype) == (3.0, 0.25, "bfloat16")
    assert "25%" in record.describe()


def test_matmul_peak_is_a_plausible_rate():
    peak = matmul_peak(size=(128, 128, 128), seconds=0.02)
    assert 0.1 < peak < 1e5  # GFLOP/s: above a pure-Python loop, below any CPU


def test_a_training_history_gives_the_rate_of_its_steps():
    history = [{"step": 1, "tokens": 10, "seconds": 0.5}, {"step": 2, "tokens": 30, "seconds": 1.5}]
    record = from_history(100, history, "adapter", peak_gflops=1e-3)
    assert record.flops == 2 * (2 * 100 * 40) and record.seconds == 2.0
    assert record.gflops == pytest.approx(8e-6) and record.fraction_of_peak == pytest.approx(8e-3)
