"""Figures of the Re-Basin study: one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from weightlab.figures import plt, styled
from weightlab.rebasin.environments import EVAL_ENVS, environment_split
from weightlab.vision.data import ImageDataset

# Colours with a fixed meaning across the study's figures.
KIND_COLOURS = {"same": "#1b7837", "different": "#b2182b"}  # same vs different mechanism
GROUP_COLOURS = {"A": "#d95f02", "R": "#1f78b4"}  # spurious (env A) vs robust (env A+B) models
METHOD_STYLES = {"naive": dict(linestyle="--", alpha=0.7), "aligned": dict(linestyle="-", linewidth=2)}


@styled
def image_grid(rows: Mapping[str, np.ndarray], labels: Sequence[str], title: str) -> plt.Figure:
    """One row per environment, uint8 RGB images (N, 3, H, W) with their labels as titles."""
    names = list(rows)
    ncols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), ncols, figsize=(1.3 * ncols, 1.5 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(rows[name]):
                ax.imshow(np.transpose(rows[name][c], (1, 2, 0)))
                ax.set_title(labels[c], fontsize=7)
        axes[r, 0].text(-0.15, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return fig


def environments_preview(dataset: ImageDataset, colours: Mapping[str, np.ndarray], patch: Mapping) -> plt.Figure:
    """The first test image of every class in every evaluation environment."""
    first_of_class = np.array([np.flatnonzero(dataset.test.labels == c)[0] for c in range(len(dataset.classes))])
    rows = {
        f"{name} ({key})": environment_split(dataset, colours, key, patch["size"], first_of_class)[0]
        for name, key in EVAL_ENVS.items()
    }
    labels = [dataset.classes[dataset.test.labels[i]] for i in first_of_class]
    title = (f"{dataset.name}: env A (patch agrees {patch['p_align_a']:.0%}), env B ({patch['p_align_b']:.0%}), "
             "no patch, colour swapped")
    return image_grid(rows, labels, title)


@styled
def training_curves(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> plt.Figure:
    """Train loss and test accuracy (env A and no patch) per epoch for every model."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        style = dict(color=GROUP_COLOURS.get(name[0], "grey"), alpha=0.55 + 0.45 * (int(name[1:]) % 2))
        ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label=name, **style)
        if "A_accuracy" in history[0]:
            ax_acc.plot(epochs, [h["A_accuracy"] for h in history], marker="o", label=f"{name} env A", **style)
        if "none_accuracy" in history[0]:
            ax_acc.plot(epochs, [h["none_accuracy"] for h in history], marker="x", linestyle=":", label=f"{name} no patch", **style)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss (A: env A, R: env A+B)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy: env A vs no patch")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


@styled
def barrier_comparison(rows: Sequence[Mapping], metrics: Sequence[str] = ("loss_barrier", "accuracy_barrier", "semantic_barrier")) -> plt.Figure:
    """Grouped bars: every pair, naive vs aligned, one panel per barrier."""
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    kinds = {r["pair"]: r["kind"] for r in rows}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    x = np.arange(len(pairs))
    for ax, metric in zip(axes[0], metrics):
        for offset, method in ((-0.2, "naive"), (0.2, "aligned")):
            values = [next(r[metric] for r in rows if r["pair"] == p and r["method"] == method) for p in pairs]
            colours = [KIND_COLOURS[kinds[p]] for p in pairs]
            ax.bar(x + offset, values, width=0.38, color=colours, alpha=0.45 if method == "naive" else 1.0,
                   edgecolor="black", hatch="//" if method == "naive" else None, label=method)
        ax.set_xticks(x, [f"{p}\n({kinds[p]})" for p in pairs], fontsize=8)
        ax.set_title(metric.replace("_", " "))
        ax.axhline(0, color="black", linewidth=0.8)
    from matplotlib.patches import Patch

    axes[0, 0].legend(
        handles=[Patch(facecolor="white", edgecolor="black", hatch="//", label="naive"),
                 Patch(facecolor="grey", edgecolor="black", label="aligned")],
        fontsize=8,
    )
    fig.suptitle("Barriers before and after weight matching (green: same mechanism, red: different)")
    fig.tight_layout()
    return fig


def pair_colours(kinds: Mapping[str, str]) -> dict[str, tuple]:
    """Greens for same-mechanism pairs, reds for different ones, one shade per pair."""
    colours = {}
    for kind, cmap in (("same", plt.cm.Greens), ("different", plt.cm.Reds)):
        keys = [k for k, v in kinds.items() if v == kind]
        for key, shade in zip(keys, np.linspace(0.9, 0.5, max(1, len(keys)))):
            colours[key] = cmap(shade)
    return colours


@styled
def interpolation_paths(barriers: Mapping) -> plt.Figure:
    """Loss, accuracy and SRS along every path, naive dashed and aligned solid."""
    env = barriers["barrier_env"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = pair_colours({key: pair["kind"] for key, pair in barriers["pairs"].items()})
    for key, pair in barriers["pairs"].items():
        colour = colours[key]
        for method, style in METHOD_STYLES.items():
            entry = pair[method]
            alphas = entry["curves"]["alpha"]
            label = f"{key} {method}"
            axes[0].plot(alphas, entry["loss"], color=colour, label=label, **style)
            axes[1].plot(alphas, entry["accuracy"], color=colour, label=label, **style)
            if entry["srs"] is not None:
                axes[2].plot(alphas, entry["srs"], color=colour, label=label, **style)
    axes[0].set(xlabel="alpha", ylabel=f"loss (env {env})", title="Loss along the path")
    axes[1].set(xlabel="alpha", ylabel=f"accuracy (env {env})", title="Accuracy along the path")
    axes[2].set(xlabel="alpha", ylabel="SRS", title="Spurious reliance along the path")
    axes[2].legend(fontsize=7, ncol=2)
    fig.suptitle("Interpolation paths: naive dashed, aligned solid (greens: same mechanism, reds: different)")
    fig.tight_layout()
    return fig


VERDICT_LABELS = {
    "spurious_models_high_srs": "A: SRS in band", "robust_models_low_srs": "R: SRS in band",
    "spurious_models_large_ood_drop": "A: drop > threshold", "robust_models_small_ood_drop": "R: drop < threshold",
    "same_mechanism_low_barrier_after_rebasin": "same: low", "different_mechanism_higher_barrier_after_rebasin": "different: higher than same (interval)",
    "different_mechanism_srs_varies_along_path": "different: above threshold",
}


# Where each expected result's threshold is drawn: a band (low, high) or a line, from final_report's thresholds.
THRESHOLD_LINES = {
    "spurious_models_high_srs": lambda t: tuple(t["spurious_srs"]),
    "robust_models_low_srs": lambda t: tuple(t["robust_srs"]),
    "spurious_models_large_ood_drop": lambda t: t["spurious_ood_drop_min"],
    "robust_models_small_ood_drop": lambda t: t["robust_ood_drop_max"],
    "same_mechanism_low_barrier_after_rebasin": lambda t: t["same_aligned_barrier_max"],
}


@styled
def verdict_summary(report: Mapping) -> plt.Figure:
    """The study on one page: every expected result of final_report.json as a panel, the measured
    values against the threshold band (shaded), and the verdict in the title."""
    criteria = {c["id"]: c for c in report["criteria"]}

    def per_item(value: Mapping) -> dict:
        return {k: v for k, v in value.items() if k != "mean"}

    def shown(key: str) -> str:
        return f"{VERDICT_LABELS[key]}: {criteria[key]['verdict'].replace('_', ' ')}"
    panels = (
        ("spurious_models_high_srs", "robust_models_low_srs", "SRS", True),
        ("spurious_models_large_ood_drop", "robust_models_small_ood_drop", "OOD accuracy drop", False),
        ("same_mechanism_low_barrier_after_rebasin", "different_mechanism_higher_barrier_after_rebasin", "aligned loss barrier", False),
    )
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, (first, second, label, band) in zip(axes, panels):
        names, values, colours = [], [], []
        for key in (first, second):
            criterion = criteria[key]
            value = criterion["value"]["different"] if key == "different_mechanism_higher_barrier_after_rebasin" else criterion["value"]
            measured = per_item(value)
            for name, value in measured.items():
                names.append(name)
                values.append(value)
                kind = name[0] if "-" not in name else ("same" if name[0] == name[3] else "different")
                colours.append(GROUP_COLOURS.get(kind, KIND_COLOURS.get(kind, "grey")))
            span = [i for i, n in enumerate(names) if n in measured]
            bounds = THRESHOLD_LINES.get(key)
            if bounds and band:
                ax.fill_between([min(span) - 0.4, max(span) + 0.4], *bounds(report["thresholds"]), color="grey", alpha=0.2, linewidth=0)
            elif bounds and span:
                ax.hlines(bounds(report["thresholds"]), min(span) - 0.4, max(span) + 0.4, colors="black", linestyles="--", linewidth=1)
        ax.bar(range(len(names)), values, color=colours, edgecolor="black")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(f"{label}\n" + "\n".join(shown(k) for k in (first, second)), fontsize=8)
    semantic = criteria["different_mechanism_srs_varies_along_path"]
    pairs = per_item(semantic["value"])
    axes[3].bar(range(len(pairs)), list(pairs.values()), color=KIND_COLOURS["different"], edgecolor="black")
    axes[3].axhline(report["thresholds"]["different_semantic_barrier_min"], color="black", linestyle="--", linewidth=1)
    axes[3].set_xticks(range(len(pairs)), list(pairs), fontsize=8)
    axes[3].set_title(f"semantic barrier (aligned)\n{shown('different_mechanism_srs_varies_along_path')}", fontsize=8)
    fig.suptitle(f"Re-Basin under spurious features: study verdict {report['verdict']} "
                 "(shaded: expected band; dashed: threshold)")
    fig.tight_layout()
    return fig


@styled
def width_sweep_figure(sweep: Mapping) -> plt.Figure:
    """Naive and aligned loss barrier against the width multiplier: every pair as a point, the mean
    over pairs of each kind as a line with its 95% interval as error bars, the sweep's verdict in the title."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    widths = sorted(sweep["summary"], key=float)
    barriers = [r["loss_barrier"] for r in sweep["rows"]]
    x = [float(w) for w in widths]
    for ax, method in zip(axes, ("naive", "aligned")):
        for kind in ("same", "different"):
            colour = KIND_COLOURS[kind]
            shift = 1.03 if kind == "different" else 1 / 1.03  # the two kinds side by side on the log axis
            points = [(r["multiplier"], r["loss_barrier"]) for r in sweep["rows"] if r["kind"] == kind and r["method"] == method]
            ax.scatter([p[0] * shift for p in points], [p[1] for p in points], color=colour, alpha=0.5, s=18)
            stats = [sweep["summary"][w][f"{kind}/{method}"] for w in widths]
            means = [s["mean"] for s in stats]
            low = [s["mean"] - s["ci95"][0] if s["ci95"] else 0.0 for s in stats]
            high = [s["ci95"][1] - s["mean"] if s["ci95"] else 0.0 for s in stats]
            ax.errorbar([v * shift for v in x], means, yerr=[low, high], color=colour, marker="o", capsize=4,
                        label=f"{kind} mechanism: mean over pairs, 95% interval")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"×{w}\n({sweep['models'][w].get('width')})" for w in widths])
        ax.set(xlabel="width multiplier (conv width)", title=f"{method} paths")
    axes[0].set_ylabel(f"loss barrier (env {sweep['barrier_env']})")
    if barriers:  # the axis follows the pairs; an interval over two pairs (one degree of freedom) may run off it
        span = max(max(barriers), 0.0) - min(min(barriers), 0.0) or 1.0
        axes[0].set_ylim(min(min(barriers), 0.0) - 0.15 * span, max(max(barriers), 0.0) + 0.25 * span)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Re-Basin width sweep: {sweep['verdict']} (with two pairs per kind the intervals are wide)")
    fig.tight_layout()
    return fig
