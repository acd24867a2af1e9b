"""Figures of the provable-repair study: one function per figure, each returning a matplotlib Figure
(drawn in the project's style, weightlab.figures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weightlab.figures import plt, styled

SOLVER_COLOURS = {"gurobi": "#b2182b", "highs": "#2166ac", "": "#888888"}


def _series(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by edit-set type and target class, each sorted by requested size."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        target = record["target_class"]
        key = record["repair_set_type"] + ("" if target is None else f" (class {target})")
        groups.setdefault(key, []).append(record)
    return {k: sorted(v, key=lambda r: r["requested_repair_set_size"]) for k, v in sorted(groups.items())}


def _value(record: Mapping[str, Any], key: str) -> float:
    value = record.get(key)
    return float("nan") if value is None else float(value)


@styled
def confusion_figure(counts: np.ndarray, classes: Sequence[str], accuracy: float) -> plt.Figure:
    """Row-normalised confusion matrix of the base model on the test set."""
    counts = np.asarray(counts, dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=6, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"Base model on the test set (accuracy {accuracy:.3f})")
    ax.grid(False)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return fig


@styled
def accuracy_vs_size(records: Sequence[Mapping[str, Any]]) -> plt.Figure:
    """Repaired test accuracy against edit-set size, one line per type (and class); x marks failures."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in _series(records).items():
        sizes = [r["actual_repair_set_size"] for r in rows]
        accuracy = [_value(r, "repaired_accuracy_test_set") for r in rows]
        (line,) = ax.plot(sizes, accuracy, marker="o", label=name)
        failed = [(s, _value(r, "baseline_accuracy_test_set")) for s, r in zip(sizes, rows) if not r["repair_successful"]]
        if failed:
            ax.scatter(*zip(*failed), marker="x", s=60, color=line.get_color(), zorder=3)
    if records:
        ax.axhline(_value(records[0], "baseline_accuracy_test_set"), color="black", linestyle="--", linewidth=1, label="base model")
    ax.set(xlabel="edit-set size (actual)", ylabel="test accuracy after repair",
           title="Edit-set size vs repaired test accuracy (x: repair failed, drawn at the base accuracy)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def runtime_vs_size(records: Sequence[Mapping[str, Any]]) -> plt.Figure:
    """Repair wall-clock time against edit-set size, coloured by solver; hollow markers failed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for solver in sorted({r["solver"] for r in records}):
        for ok in (True, False):
            rows = [r for r in records if r["solver"] == solver and bool(r["repair_successful"]) == ok]
            if rows:
                colour = SOLVER_COLOURS.get(solver, "#888888")
                ax.scatter([r["actual_repair_set_size"] for r in rows], [_value(r, "repair_runtime_seconds") for r in rows],
                           facecolors=colour if ok else "none", edgecolors=colour, s=40,
                           label=f"{solver or 'no solve'} ({'repaired' if ok else 'failed'})")
    ax.set(xlabel="edit-set size (actual)", ylabel="repair runtime (s)", title="Repair runtime vs edit-set size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def drawdown(records: Sequence[Mapping[str, Any]]) -> plt.Figure:
    """Accuracy lost on the drawdown set (test minus edit images) against edit-set size."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in _series(records).items():
        ok = [r for r in rows if r["repair_successful"]]
        lost = [_value(r, "baseline_accuracy_drawdown_set") - _value(r, "repaired_accuracy_drawdown_set") for r in ok]
        ax.plot([r["actual_repair_set_size"] for r in ok], lost, marker="o", label=name)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set(xlabel="edit-set size (actual)", ylabel="drawdown (base - repaired accuracy)",
           title="Drawdown: accuracy lost on test images outside the edit set")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
