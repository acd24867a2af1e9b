"""Figures of the drift study: one function per figure, each returning a matplotlib Figure (saving
is the caller's). Every group keeps one colour in every figure."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.drift.design import METRICS
from weightlab.drift.report import refusal_series, time_series
from weightlab.figures import Figure, plt, styled

GROUP_STYLE = {
    "snip_top": ("#b2182b", "-"), "set_diff": ("#d6604d", "-"), "utility": ("#2166ac", "-"),
    "random": ("#4d4d4d", "--"), "random_matched": ("#878787", ":"),
    "random_matched:snip_top": ("#b2182b", ":"), "random_matched:set_diff": ("#d6604d", ":"),
}
TITLES = {"cosine": "1 − cosine similarity (direction change)", "l2": "L2 distance ‖Δrow‖", "relative": "relative change ‖Δrow‖ / ‖row‖"}
WEIGHT_TITLES = {"l2": "change |ΔW_ij|", "relative": "relative change |ΔW_ij| / |W_ij|"}  # unit weight: no cosine for a scalar


def _measures(measures: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The measures a group carries (a single weight has no cosine) and their panel titles."""
    if "cosine_distance" in measures:
        return list(METRICS), TITLES
    return [m for m in METRICS if m in measures], WEIGHT_TITLES


def _style(group: str) -> dict[str, Any]:
    colour, line = GROUP_STYLE.get(group, ("#1b7837", "-"))
    return {"color": colour, "linestyle": line}


@styled
def drift_timeseries_figure(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Median drift of each group against the step, one panel per measure (log scale), with the
    interquartile band; cosine is shown as 1 − cosine so that up means more drift everywhere."""
    metrics, titles = _measures(next(iter(records[-1]["groups"].values()), {}))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, measure in zip(np.atleast_1d(axes), metrics):
        key = "cosine_distance" if measure == "cosine" else measure
        medians = time_series(records, key, "median")
        low, high = time_series(records, key, "q25"), time_series(records, key, "q75")
        for group, (steps, values) in medians.items():
            points = [(s, v) for s, v in zip(steps, values) if v is not None and v > 0]
            if not points:
                continue
            ax.plot(*zip(*points), marker="o", ms=3, label=group, **_style(group))
            band = [(s, lo, hi) for s, lo, hi in zip(steps, low[group][1], high[group][1]) if lo is not None and hi is not None and lo > 0]
            if band and not group.startswith("random_matched:"):
                s, lo, hi = zip(*band)
                ax.fill_between(s, lo, hi, color=_style(group)["color"], alpha=0.08)
        ax.set_yscale("log")
        ax.set_title(titles[measure])
        ax.set_xlabel("fine-tuning step")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def final_distributions_figure(final: Mapping[str, Mapping[str, np.ndarray]], groups: Sequence[str] | None = None) -> Figure:
    """Per-neuron drift at the last step, one box per group and panel per measure (log scale)."""
    groups = [g for g in (groups or list(final)) if g in final]
    metrics, titles = _measures(final[groups[0]] if groups else {})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5))
    for ax, measure in zip(np.atleast_1d(axes), metrics):
        key = "cosine_distance" if measure == "cosine" else measure
        data = [final[g][key][np.isfinite(final[g][key]) & (final[g][key] > 0)] for g in groups]
        boxes = ax.boxplot(data, showfliers=False, patch_artist=True)
        for patch, g in zip(boxes["boxes"], groups):
            patch.set_facecolor(_style(g)["color"])
            patch.set_alpha(0.35)
        ax.set_xticks(range(1, len(groups) + 1), [g.replace("random_matched:", "matched:") for g in groups], rotation=35, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(titles[measure])
    fig.tight_layout()
    return fig


@styled
def refusal_figure(records: Sequence[Mapping[str, Any]], alignment: Mapping[str, Any] | None = None) -> Figure:
    """Refusal rate on held-out harmful and benign prompts along the fine-tuning (and, as markers
    at step 0's left, before and after the safety alignment)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {"harmful": "#b2182b", "benign": "#2166ac"}
    for name, (steps, rates) in refusal_series(records).items():
        ax.plot(steps, rates, marker="o", label=f"{name} (fine-tuning)", color=colours.get(name))
    if alignment:
        for name in colours:
            before = (alignment.get("before") or {}).get(name)
            if before is not None:
                ax.scatter([-0.05 * max(1, records[-1]["step"])], [before["rate"]], marker="x", color=colours[name], label=f"{name} before alignment")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("refusal rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
