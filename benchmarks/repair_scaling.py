"""Repair time against edit-set size: weightlab's LP with HiGHS (interior point) and with gurobipy
(where pip's size-limited licence takes the LP), and the `prdnn` package where it can run.

Run by hand after the repair study's base model exists (default preset):
    snakemake --cores 2 results/repair/base_predictions.npz
    python benchmarks/repair_scaling.py [--layers fc3 fc2] [--sizes 10 25 50 100 200]

Every method gets the same net, edit sets (class_homogeneous_incorrect of one class, seeded,
nested), margin and bound, and minimises the L-inf norm of the change. Printed per run: the
solver, LP size, repair time, L-inf change, and drawdown (base minus repaired accuracy on the
test set without the edit images).

prdnn 1.0 (PyPI, the PRDNN authors') does not install beside this project: it requires
pysyrenn>=1.1, whose only 1.1 release is yanked, so `pip install prdnn` finds nothing; with
`pysyrenn==1.1` pinned it installs, but its protobuf modules need
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python and its LP code uses `np.float`, removed in
NumPy 1.24. To compare anyway, in a throwaway venv that reuses this torch:
    python -m venv --system-site-packages /tmp/prdnn_venv
    /tmp/prdnn_venv/bin/pip install prdnn pysyrenn==1.1
    /tmp/prdnn_venv/bin/python benchmarks/repair_scaling.py
This script sets the protobuf variable and restores `np.float` (= float) for prdnn only. prdnn
builds its LP for gurobipy alone, so the size-limited licence caps it as well.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from weightlab.checkpoints import load_checkpoint
from weightlab.figures import plt, styled
from weightlab.io import read_npz, save_figure
from weightlab.repair.core import apply_repair, head_inputs, repair_head
from weightlab.repair.editsets import draw_edit_set
from weightlab.repair.lp import build_repair_lp, split_head
from weightlab.repair.models import ARCHITECTURES
from weightlab.repair.solvers import fits_size_limited_licence, gurobi_available
from weightlab.runtime import configure
from weightlab.vision.data import dataset_from_arrays


def drawdown(head: nn.Sequential, repaired: nn.Sequential, features: torch.Tensor, labels: np.ndarray, keep: np.ndarray) -> float:
    with torch.no_grad():
        before = head(features[keep]).argmax(1).numpy()
        after = repaired(features[keep]).argmax(1).numpy()
    return float((before == labels[keep]).mean() - (after == labels[keep]).mean())


def ours(head, layer, features, labels, edit, keep, args, solver):
    times, result = [], None
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = repair_head(
            head, layer, features[edit], labels[edit], args.margin, args.param_bound, solver, args.threads, args.time_limit,
            objective="linf",  # the objective prdnn minimises, so the two are compared on one problem
        )
        times.append(time.perf_counter() - started)
    row = {"method": f"weightlab+{solver}", "seconds": statistics.median(times), "vars": result.num_vars,
           "constraints": result.num_constraints, "status": result.solve.status, "iterations": result.solve.iterations}
    if result.successful:
        holder = nn.Module()
        holder.classifier = head
        repaired = apply_repair(holder, result).classifier
        row |= {"linf": result.linf, "l1": result.l1, "drawdown": drawdown(head, repaired, features, labels, keep)}
    return row


def prdnn_available() -> str:
    """'' when prdnn imports, else why not."""
    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    if not hasattr(np, "float"):
        np.float = float  # prdnn 1.0 uses the alias NumPy 1.24 removed
    try:
        import prdnn  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means it cannot run here
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return ""


def prdnn_repair(head, layer, features, labels, edit, keep, args):
    """The same repair by prdnn.ProvableRepair (L-inf objective only, bounds and margin as ours)."""
    from prdnn import ProvableRepair
    from pysyrenn import FullyConnectedLayer, Network, ReluLayer

    layers, index = [], None
    for name, module in head.named_children():
        if isinstance(module, nn.Linear):
            if name == layer:
                index = len(layers)
            layers.append(FullyConnectedLayer(module.weight.detach().numpy().T.copy(), module.bias.detach().numpy().copy()))
        elif isinstance(module, nn.ReLU):
            layers.append(ReluLayer())
    network = Network(layers)
    times, patched, repair = [], None, None
    for _ in range(args.repeats):
        started = time.perf_counter()
        repair = ProvableRepair(network, index, features[edit].numpy(), labels[edit], delta_bounds=(-args.param_bound, args.param_bound))
        repair.constraint_buffer = args.margin
        repair.delta_l1_weight, repair.delta_linf_weight = 0.0, 1.0
        repair.gurobi_timelimit = args.time_limit
        patched = repair.compute()
        times.append(time.perf_counter() - started)
    row = {"method": "prdnn+gurobi", "seconds": statistics.median(times), "status": "Optimal" if patched else "failed"}
    if patched is not None:
        new = patched.value_layers[index]
        old = layers[index]
        change = np.concatenate([(new.weights - old.weights).numpy().ravel(), (new.biases - old.biases).numpy().ravel()])
        everything = features[keep].numpy()
        before = (network.compute(everything).argmax(1) == labels[keep]).mean()
        after = (patched.compute(everything).argmax(1) == labels[keep]).mean()
        row |= {"linf": float(np.abs(change).max()), "l1": float(np.abs(change).sum()), "drawdown": float(before - after)}
    return row


@styled
def figure(rows: list[dict]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (layer, method) in sorted({(r["layer"], r["method"]) for r in rows}):
        points = sorted((r["size"], r["seconds"]) for r in rows if r["layer"] == layer and r["method"] == method and "seconds" in r)
        if points:
            ax.plot(*zip(*points), marker="o", label=f"{layer}: {method}")
    ax.set(xlabel="edit-set size", ylabel="repair time (s)", xscale="log", yscale="log",
           title="Repair time vs edit-set size (AlexNet-style base model, default preset)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="results/repair/alexnet_base.pt")
    parser.add_argument("--images", default="results/data/images.npz")
    parser.add_argument("--predictions", default="results/repair/base_predictions.npz")
    parser.add_argument("--layers", nargs="+", default=["fc3", "fc2"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 25, 50, 100, 200])
    parser.add_argument("--set-type", default="class_homogeneous_incorrect")
    parser.add_argument("--target-class", type=int, default=6)
    parser.add_argument("--margin", type=float, default=2.0)
    parser.add_argument("--param-bound", type=float, default=5.0)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="results/benchmarks/repair_scaling.png")
    args = parser.parse_args()
    configure(args.threads)
    test = dataset_from_arrays(read_npz(args.images)).test
    model, _ = load_checkpoint(args.checkpoint, ARCHITECTURES)
    base = read_npz(args.predictions)
    features = head_inputs(model, test.images)
    head = model.classifier
    target = None if args.set_type == "misclassified" else args.target_class
    why_not_prdnn = prdnn_available()
    if why_not_prdnn:
        print(f"prdnn cannot run here ({why_not_prdnn}); see this script's docstring.")
    rows = []
    for layer in args.layers:
        for size in args.sizes:
            edit_set = draw_edit_set(args.set_type, size, base["labels"], base["predictions"], args.seed, target)
            edit = edit_set.indices
            keep = np.setdiff1d(np.arange(len(test.labels)), edit)
            lp = build_repair_lp(split_head(head, layer, features[edit]), test.labels[edit], args.margin, args.param_bound)
            fits = fits_size_limited_licence(lp)
            runs = [ours(head, layer, features, test.labels, edit, keep, args, "highs")]
            if fits and gurobi_available():
                runs.append(ours(head, layer, features, test.labels, edit, keep, args, "gurobi"))
            if fits and not why_not_prdnn and layer == head_last_linear(head):
                runs.append(prdnn_repair(head, layer, features, test.labels, edit, keep, args))
            for run in runs:
                rows.append({"layer": layer, "size": edit_set.actual_size, **run})
                print_row(rows[-1])
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure(rows), args.figure)
    print(f"figure: {args.figure}")


def head_last_linear(head: nn.Sequential) -> str:
    return [n for n, m in head.named_children() if isinstance(m, nn.Linear)][-1]


HEADER = (f"{'layer':5} {'n':>4} {'method':16} {'vars':>6} {'cons':>6} {'status':10} {'iters':>5} {'time s':>8} "
          f"{'Linf':>8} {'L1':>9} {'drawdown':>8}")


def print_row(row: dict, _printed: list = []) -> None:  # noqa: B006 - header printed once
    if not _printed:
        print(HEADER)
        _printed.append(True)
    fmt = lambda key, spec: format(row[key], spec) if row.get(key) is not None else "-"  # noqa: E731
    print(f"{row['layer']:5} {row['size']:>4} {row['method']:16} {fmt('vars', '>6')} {fmt('constraints', '>6')} "
          f"{row['status']:10} {fmt('iterations', '>5')} {row['seconds']:>8.3f} {fmt('linf', '>8.4f')} {fmt('l1', '>9.2f')} "
          f"{fmt('drawdown', '>8.4f')}")


if __name__ == "__main__":
    main()
