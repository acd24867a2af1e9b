"""The drift study's CUDA path (skipped without a GPU): SNIP, LoRA fine-tuning with drift tracking and
greedy generation of a bfloat16 model on the GPU, as the paper preset runs them."""

import numpy as np
import pytest
import torch
from test_drift import PAIRS, CharTokenizer, samples, tiny_llama

from conftest import lora_settings, train_settings
from weightlab.drift.groups import build_groups
from weightlab.drift.lora import RefusalProbe, finetune_with_drift
from weightlab.drift.snip import projection_modules, snip_neuron_scores

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible; run benchmarks/gpu_check.sh on a GPU machine")]


def test_snip_and_drift_run_on_a_bfloat16_model_on_the_gpu():
    model = tiny_llama().to("cuda", torch.bfloat16)
    safety = snip_neuron_scores(model, samples(2))
    utility = snip_neuron_scores(model, samples(2, seed=1))
    assert set(safety) == set(projection_modules(model)) and all(np.isfinite(v).all() for v in safety.values())
    groups = build_groups(safety, utility, snip_top_k=0.1, set_diff_q=0.3, utility_top_k=0.1, random_k=0.1)
    result = finetune_with_drift(model, CharTokenizer(), PAIRS, groups, lora_settings(r=2, alpha=4, dropout=0.0),
                                 train_settings(learning_rate=1e-3, batch_size=4, max_steps=2, max_length=64), drift_interval=1,
                                 probe=RefusalProbe({"harmful": ["bad things"]}, max_new_tokens=2))
    assert [r["step"] for r in result.records] == [0, 1, 2]
    assert result.records[-1]["groups"]["snip_top"]["l2"]["median"] > 0
