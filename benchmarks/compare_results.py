"""Compare two results folders: are the numbers the same?

    python benchmarks/compare_results.py RESULTS_A RESULTS_B [--tolerance 0]

Every JSON, JSON-lines and CSV file is compared value by value, leaving out provenance blocks,
audit logs' commit and timing fields (`TIMING_KEYS`, and keys ending in `_seconds`); every torch checkpoint
(`.pt`), safetensors file and `.npz` archive tensor by tensor (`torch.equal`, or `np.array_equal`),
with its non-tensor payload (architecture, arguments, metadata) compared as JSON. Figures,
HTML pages, logs and per-rule benchmarks are skipped (they carry timings and dates). Prints
one line per difference and a summary; exits 1 when anything differs or is missing on one side.
Used to check that a refactoring changed no result (issue 20: before and after the layout).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Where and when a run happened, not what it computed: provenance blocks, the commit an audit log
# names, and timings (any key ending in `_seconds` or starting with `seconds_` too; `throughput`: GFLOP/s).
TIMING_KEYS = {"provenance", "git_commit", "timing", "seconds", "timestamp", "start_time", "time", "duration", "runtime",
               "wall", "elapsed", "started", "finished", "throughput"}
COMPARED = {".json", ".jsonl", ".csv", ".pt", ".safetensors", ".npz"}
SKIPPED_FOLDERS = {"logs", "benchmarks"}


def _ignored(key: str) -> bool:
    return key in TIMING_KEYS or key.endswith("_seconds") or key.startswith("seconds_")


def diff_values(a: Any, b: Any, where: str, tolerance: float, out: list[str]) -> None:
    """Append 'where: a != b' for every difference between two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if _ignored(str(key)):
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'B' if key not in a else 'A'}")
            else:
                diff_values(a[key], b[key], f"{where}.{key}", tolerance, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff_values(x, y, f"{where}[{i}]", tolerance, out)
    elif isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tolerance
        if not same:
            out.append(f"{where}: {a!r} != {b!r} (diff {abs(a - b):.3g})")
    elif a != b:
        out.append(f"{where}: {a!r} != {b!r}")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _tensors_and_rest(path: Path) -> tuple[dict[str, Any], Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path))), None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}, None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    tensors: dict[str, Any] = {}

    def split(value: Any, name: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[name] = value
            return "<tensor>"
        if isinstance(value, dict):
            return {k: split(v, f"{name}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [split(v, f"{name}[{i}]") for i, v in enumerate(value)]
        return value

    return tensors, split(payload, "")


def _equal_arrays(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def compare_file(a: Path, b: Path, name: str, tolerance: float) -> list[str]:
    out: list[str] = []
    if a.suffix == ".json":
        diff_values(json.loads(a.read_text()), json.loads(b.read_text()), name, tolerance, out)
    elif a.suffix == ".jsonl":
        diff_values([json.loads(line) for line in a.read_text().splitlines() if line.strip()],
                    [json.loads(line) for line in b.read_text().splitlines() if line.strip()], name, tolerance, out)
    elif a.suffix == ".csv":
        rows_a, rows_b = _csv_rows(a), _csv_rows(b)
        diff_values([{k: _number(v) for k, v in r.items()} for r in rows_a],
                    [{k: _number(v) for k, v in r.items()} for r in rows_b], name, tolerance, out)
    else:
        tensors_a, rest_a = _tensors_and_rest(a)
        tensors_b, rest_b = _tensors_and_rest(b)
        diff_values(rest_a, rest_b, f"{name}:payload", tolerance, out)
        for key in sorted(set(tensors_a) | set(tensors_b)):
            if key not in tensors_a or key not in tensors_b:
                out.append(f"{name}:{key}: only in {'B' if key not in tensors_a else 'A'}")
            elif not _equal_arrays(tensors_a[key], tensors_b[key]):
                out.append(f"{name}:{key}: tensors differ")
    return out


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def result_files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in COMPARED and not SKIPPED_FOLDERS & set(p.relative_to(root).parts[:1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="first results folder")
    parser.add_argument("b", type=Path, help="second results folder")
    parser.add_argument("--tolerance", type=float, default=0.0, help="absolute tolerance for floats (default: exact)")
    args = parser.parse_args(argv)
    files_a, files_b = result_files(args.a), result_files(args.b)
    problems = [f"{name}: only in {'A' if name in files_a else 'B'}" for name in sorted(set(files_a) ^ set(files_b))]
    common = sorted(set(files_a) & set(files_b))
    counts: dict[str, int] = {}
    for name in common:
        counts[files_a[name].suffix] = counts.get(files_a[name].suffix, 0) + 1
        problems += compare_file(files_a[name], files_b[name], name, args.tolerance)
    for line in problems:
        print(line)
    summary = ", ".join(f"{n} {suffix}" for suffix, n in sorted(counts.items()))
    print(f"compared {len(common)} files ({summary}): {'IDENTICAL' if not problems else f'{len(problems)} differences'}"
          " (provenance and timing fields left out)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
