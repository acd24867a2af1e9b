"""How the held-out utility loss of the drift study's fine-tuning moves under a few (optimizer,
learning rate, steps, precision) choices: the measurement behind the default preset's setting.

Starts from the aligned model of a run (results/drift/aligned_model) and its data.json; the
held-out pairs are data.json's ``heldout`` set, or, for a data file from before that set existed,
utility pairs of documents in no set of the file. One fine-tuning at a time (the machine is
shared); one JSON line per choice on stdout:

    python benchmarks/drift_finetune_choice.py adam:3e-3:40 adam:1e-3:60:bfloat16 sgd:0.3:60 ...

Each argument is optimizer:learning_rate:steps[:precision]. The held-out loss is measured at step
0, every --every steps and at the end; "fall" is the paired per-example change from step 0 to the
end with its 95% t interval (negative: the loss fell).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from weightlab.drift.data import document_of, encode_pairs, utility_pairs
from weightlab.drift.lora import LoraSettings, TrainSettings, example_losses, train_lora, wrap_lora
from weightlab.drift.refusal import pad_token_id
from weightlab.drift.stats import paired_change
from weightlab.io import read_json
from weightlab.lm.backbone import load_backbone


def heldout_pairs(data: dict, n: int, seed: int) -> list[dict]:
    if data.get("heldout"):
        return data["heldout"][:n]
    used = {document_of(p) for name in ("snip_utility", "align", "finetune", "eval_benign") for p in data[name]
            if p["source"] in ("jargon", "news", "pyrit")}
    free = [p for p in utility_pairs(max_chars=200) if document_of(p) not in used]
    order = np.random.default_rng([seed, 99]).permutation(len(free))
    return [free[i] for i in order[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("choices", nargs="+")
    parser.add_argument("--model", default="results/drift/aligned_model")
    parser.add_argument("--data", default="results/drift/data.json")
    parser.add_argument("--heldout", type=int, default=32)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = read_json(args.data)
    drift = yaml.safe_load(Path("config.yaml").read_text())["drift"]  # the defaults the arguments do not change
    heldout = heldout_pairs(data, args.heldout, args.seed)
    for choice in args.choices:
        optimizer, lr, steps, *rest = choice.split(":")
        settings = TrainSettings.from_settings({**drift, "learning_rate": float(lr), "batch_size": args.batch_size, "max_steps": int(steps),
                                                "max_length": args.max_length, "optimizer": optimizer, "precision": rest[0] if rest else "fp32"})
        backbone = load_backbone(args.model, "cpu", torch.float32)
        model = wrap_lora(backbone.model, LoraSettings.from_settings(drift), args.seed)
        pad = pad_token_id(backbone.tokenizer)
        examples = encode_pairs(backbone.tokenizer, data["finetune"], settings.max_length)
        held = encode_pairs(backbone.tokenizer, heldout, settings.max_length)
        curve: dict[int, float] = {}
        losses: dict[int, np.ndarray] = {}

        def callback(step: int, _loss: float | None) -> None:
            losses[step] = example_losses(model, held, pad, 16)  # noqa: B023
            curve[step] = float(losses[step].mean())  # noqa: B023

        start = time.perf_counter()
        history = train_lora(model, examples, settings, pad, torch.Generator().manual_seed(args.seed), callback, args.every)
        seconds = time.perf_counter() - start
        train_seconds = sum(h["seconds"] for h in history)
        first, last = min(losses), max(losses)
        fall = paired_change(losses[first], losses[last])
        print(json.dumps({"choice": choice, "steps": len(history), "seconds": round(seconds, 1),
                          "seconds_per_step": round(train_seconds / len(history), 2), "heldout_loss": curve,
                          "relative_fall": (curve[first] - curve[last]) / curve[first], "paired_change": fall,
                          "train_loss_first10": float(np.mean([h["loss"] for h in history[:10]])),
                          "train_loss_last10": float(np.mean([h["loss"] for h in history[-10:]]))}), flush=True)
        print(f"{choice}: {curve}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
