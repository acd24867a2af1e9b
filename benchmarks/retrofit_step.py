"""Seconds per retrofit training step and per evaluation on this machine (run by hand).

    python benchmarks/retrofit_step.py [--folder results/lm/models/SmolLM2-135M-Instruct] [--steps 5]

Needs the converted backbone (rule lm_backbone) and results/lm/text.json (rule lm_text):
    snakemake --cores 2 results/lm/models/SmolLM2-135M-Instruct results/lm/text.json
Prints one row per (method, trainable, batch x seq_len): median seconds per step (after one
warm-up step), the projection to 100 steps, and the cost of one evaluation.
"""

from __future__ import annotations

import argparse
import time

import torch

from weightlab.io import read_json
from weightlab.lm.backbone import load_backbone
from weightlab.retrofit.data import retrofit_data
from weightlab.retrofit.training import RetrofitConfig, measure, retrofit
from weightlab.runtime import configure


def step_seconds(folder: str, corpus: dict, method: str, trainable: str, batch: int, seq_len: int, steps: int) -> float:
    """(time of 1 + steps steps - time of 1 step) / steps: the first step, which allocates
    the optimiser state, is left out. The transport runs every step (glt_interval 1)."""
    backbone = load_backbone(folder)
    train, val, _ = retrofit_data(backbone.tokenizer, corpus, "news", seq_len, eval_sequences=2)
    initial = {"conditioning": 0.0, "activation_conditioning": 0.0, "perplexity": 0.0, "loss": 0.0, "gram_penalty": 0.0}
    seconds = []
    for num_steps in (1, 1 + steps):
        cfg = RetrofitConfig(method=method, max_docs=None, num_steps=num_steps, lr=1e-4, batch_size=batch, eval_interval=10**6,
                             gram_weight=0.01, glt_interval=1, weight_decay=0.01, trainable=trainable)
        result = retrofit(backbone.model, train, val, cfg, torch.device("cpu"), torch.Generator().manual_seed(0), initial=initial)
        seconds.append(result["timing"]["train_seconds"])
    return (seconds[1] - seconds[0]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="results/lm/models/SmolLM2-135M-Instruct")
    parser.add_argument("--text", default="results/lm/text.json")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure(args.threads)
    corpus = read_json(args.text)
    print(f"{'method':<10}{'trainable':>10}{'batch x seq':>13}{'s/step':>9}{'s/100 steps':>13}")
    for trainable in ("all", "mlp"):
        for method in ("standard", "gram", "geometry"):
            for batch, seq_len in ((4, 64), (4, 128)):
                seconds = step_seconds(args.folder, corpus, method, trainable, batch, seq_len, args.steps)
                print(f"{method:<10}{trainable:>10}{f'{batch} x {seq_len}':>13}{seconds:>9.2f}{100 * seconds:>13.0f}", flush=True)
    backbone = load_backbone(args.folder)
    _, val, _ = retrofit_data(backbone.tokenizer, corpus, "news", 64, eval_sequences=32)
    start = time.perf_counter()
    measure(backbone.model, val, torch.device("cpu"))
    print(f"one evaluation (32 x 64 tokens, loss + both conditioning metrics): {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
