"""Figures of the retrofit study: one function per figure, each returning a matplotlib Figure
(saving is the caller's)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from weightlab.figures import Figure, plt, styled
from weightlab.retrofit.design import METRICS

TITLES = {
    "conditioning": "FFN weight Gram conditioning (mean)",
    "activation_conditioning": "FFN input covariance conditioning (mean)",
    "perplexity": "validation perplexity",
    "loss": "validation loss",
}


@styled
def trajectory_figure(results: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Conditioning (weights and activations), perplexity and loss against steps, one line per run."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, key in zip(axes.flat, METRICS):
        for run, result in results.items():
            trajectory = result["trajectory"]
            points = [(s, v) for s, v in zip(trajectory["steps"], trajectory[key]) if v is not None and math.isfinite(v)]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=run)
        ax.set_title(TITLES[key])
        ax.set_xlabel("step")
        if key != "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    return fig
