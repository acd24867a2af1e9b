"""Headline numbers of two smoke runs (CPU and CUDA) side by side; exit 1 if one is missing or not finite.

Training on another device takes other floating-point paths, so trained models (and everything
downstream) differ a little; the check is that the CUDA path runs end to end and lands near the
CPU numbers, not that it matches them bit for bit.
    python benchmarks/gpu_check.py <cpu results> <cuda results>
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd


def headline(results: Path) -> dict[str, float]:
    numbers: dict[str, float] = {}
    for model, values in json.loads((results / "rebasin/srs.json").read_text())["models"].items():
        numbers[f"rebasin SRS {model}"] = values["srs"]
    for pair, record in json.loads((results / "barriers.json").read_text())["pairs"].items():
        for method in ("naive", "aligned"):
            numbers[f"rebasin loss barrier {pair} {method}"] = record[method]["loss_barrier"]
    base = json.loads((results / "repair/base_evaluation.json").read_text())
    numbers["repair base test accuracy"] = base["test_accuracy"]
    for row in pd.read_csv(results / "repair/experiment_data.csv").itertuples():
        numbers[f"repair {row.experiment_id} repaired test accuracy"] = float(row.repaired_accuracy_test_set)
    for run, values in json.loads((results / "retrofit/summary.json").read_text())["runs"].items():
        numbers[f"retrofit {run} final perplexity"] = values["final_perplexity"]
    return numbers


def main(cpu: str, cuda: str) -> int:
    on_cpu, on_cuda = headline(Path(cpu)), headline(Path(cuda))
    print("| number | cpu | cuda | relative difference |\n|---|---|---|---|")
    bad = 0
    for key, value in on_cpu.items():
        other = on_cuda.get(key)
        ok = other is not None and (math.isfinite(other) or not math.isfinite(value))
        bad += not ok
        relative = abs(other - value) / max(abs(value), 1e-12) if ok and math.isfinite(value) else float("nan")
        print(f"| {key} | {value:.4g} | {other if other is None else format(other, '.4g')} | {relative:.1%} |")
    print(f"gpu_check: {len(on_cpu)} numbers, {bad} missing or not finite on CUDA")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
