"""Held-out refusal after the drift study's safety alignment under a few alignment mixes: the
measurement behind the default preset's alignment data (the precondition `alignment_refuses`:
held-out harmful refusal >= 0.9 with benign refusal <= 0.1).

Starts from the backbone folder and a data.json of the current data code (results/drift/); every
choice is measured on the same held-out prompts (data.json's ``eval_harmful`` and
``eval_benign``), never on the drift verdict. One alignment at a time; one JSON line per choice
on stdout:

    python benchmarks/drift_alignment_choice.py general=0 general=24 general=24,harmful=64 ...

A choice names how many of data.json's alignment pairs of each kind it keeps (the first n, in
the file's order): ``harmful`` (AdvBench prompt + generic refusal), ``utility`` (Jargon and news
pairs), ``general`` (PyRIT's benign general requests with answers); ``steps`` and ``lr`` the
training (default 30 steps at 1e-3, batch 4); ``precision=bf16`` the training and the probe
(weightlab.lm.precision).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from weightlab.drift.lora import LoraSettings, RefusalProbe, TrainSettings, align_safety
from weightlab.io import read_json
from weightlab.lm.backbone import load_backbone

KINDS = {"harmful": ("align_advbench",), "utility": ("jargon", "news"), "general": ("pyrit",)}


def parse(choice: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in choice.split(",") if part)


def mix(pairs: list[dict], keep: dict[str, str]) -> list[dict]:
    """The alignment pairs with at most keep[kind] of each kind (file order kept)."""
    counts = {kind: 0 for kind in KINDS}
    out = []
    for pair in pairs:
        kind = next(k for k, sources in KINDS.items() if pair["source"] in sources)
        if kind in keep and counts[kind] >= int(keep[kind]):
            continue
        counts[kind] += 1
        out.append(pair)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("choices", nargs="+")
    parser.add_argument("--model", default="results/lm/models/SmolLM2-135M-Instruct")
    parser.add_argument("--data", default="results/drift/data.json")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = read_json(args.data)
    drift = yaml.safe_load(Path("config.yaml").read_text())["drift"]  # the defaults the arguments do not change
    for choice in args.choices:
        keep = parse(choice)
        precision = keep.pop("precision", "fp32")
        steps, lr = int(keep.pop("steps", 30)), float(keep.pop("lr", 1e-3))
        pairs = mix(data["align"], keep)
        settings = TrainSettings.from_settings({**drift["alignment"], "learning_rate": lr, "batch_size": 4, "max_steps": steps,
                                                "max_length": args.max_length, "precision": precision}, "drift.alignment")
        backbone = load_backbone(args.model, "cpu", torch.float32)
        torch.manual_seed(args.seed)
        cpu, wall = time.process_time(), time.perf_counter()
        merged, history = align_safety(backbone.model, backbone.tokenizer, pairs, LoraSettings.from_settings(drift), settings, args.seed)
        train_cpu, train_wall = time.process_time() - cpu, time.perf_counter() - wall
        probe = RefusalProbe.from_data(data, args.max_new_tokens, 20, keep_answers=0, precision=precision)
        cpu, wall = time.process_time(), time.perf_counter()
        after = probe(merged, backbone.tokenizer)
        probe_cpu, probe_wall = time.process_time() - cpu, time.perf_counter() - wall
        kinds = {kind: sum(p["source"] in sources for p in pairs) for kind, sources in KINDS.items()}
        print(json.dumps({
            "choice": choice, "pairs": kinds, "steps": len(history), "lr": lr, "precision": precision,
            "loss_first_last": [history[0]["loss"], history[-1]["loss"]],
            "refusal": {name: {k: r[k] for k in ("rate", "refused", "n", "interval", "by_source")} for name, r in after.items()},
            "cpu_seconds": {"training": round(train_cpu, 1), "probe": round(probe_cpu, 1)},
            "wall_seconds": {"training": round(train_wall, 1), "probe": round(probe_wall, 1)},
        }), flush=True)


if __name__ == "__main__":
    main()
