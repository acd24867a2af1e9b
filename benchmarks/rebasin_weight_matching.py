"""Weight matching: weightlab's implementation vs the `rebasin` package (an independent one).

Run by hand after the default pipeline (it reads its checkpoints and data):
    pip install --no-deps -r benchmarks/requirements.txt
    python benchmarks/rebasin_weight_matching.py [--results results] [--repeats 5]
Prints, per pair, the time of one weight matching and the aligned loss barrier each gives.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from weightlab.checkpoints import load_checkpoint
from weightlab.io import read_json, read_npz
from weightlab.rebasin.barriers import loss_barrier
from weightlab.rebasin.environments import evaluation_sets, reset_images
from weightlab.rebasin.models import ARCHITECTURES
from weightlab.rebasin.paths import align, interpolation_path, path_curves
from weightlab.runtime import configure
from weightlab.vision.data import dataset_from_arrays


def time_it(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def rebasin_package(model_a, model_b, example):
    from rebasin import PermutationCoordinateDescent

    other = copy.deepcopy(model_b)
    PermutationCoordinateDescent(model_a, other, example).rebasin()
    return other.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", nargs="+", default=["A1-A2", "R1-R2", "A1-R1"])
    args = parser.parse_args()
    configure(2)
    results = Path(args.results)
    config = read_json(results / "barriers.json")["provenance"]["config"]
    patch, settings = config["patch"]["size"], config["interpolation"]
    dataset = dataset_from_arrays(read_npz(results / "data/images.npz"))
    colours = read_npz(results / "rebasin/environments.npz")
    eval_sets = {"A": evaluation_sets(dataset, colours, patch, settings["eval_size"], 0)["A"]}
    alphas = np.linspace(0, 1, settings["num_alphas"]).tolist()
    device = torch.device("cpu")
    print("| pair | implementation | median time of one matching (s) | aligned loss barrier (env A) |")
    print("|---|---|---|---|")
    for pair in args.pairs:
        ref_name, other_name = pair.split("-")
        ref, _ = load_checkpoint(results / f"checkpoints/model_{ref_name}.pt", ARCHITECTURES)
        other, _ = load_checkpoint(results / f"checkpoints/model_{other_name}.pt", ARCHITECTURES)
        reset = reset_images(dataset, colours, [ref_name, other_name], patch, settings["bn_reset_size"], 0)
        example = torch.zeros(2, 3, 32, 32)
        candidates = {
            "weightlab": lambda ref=ref, other=other: align(ref, other)[0],
            "rebasin 0.0.47": lambda ref=ref, other=other, example=example: rebasin_package(ref, other, example),
        }
        state_ref = {k: v.clone() for k, v in ref.state_dict().items()}
        for label, function in candidates.items():
            seconds, aligned = time_it(function, args.repeats)
            model = copy.deepcopy(ref)
            curves = path_curves(interpolation_path(model, state_ref, aligned, alphas, eval_sets, reset, device, desc=label))
            print(f"| {pair} | {label} | {seconds:.3f} | {loss_barrier(curves['A_loss']):.4f} |", flush=True)


if __name__ == "__main__":
    main()
