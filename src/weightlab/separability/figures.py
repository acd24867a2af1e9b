"""Figures of the separability study, one function per figure, each drawn from audit logs
(grouped by run name, as `criteria.by_run` gives them) and returning a matplotlib Figure."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.figures import Figure, plt, styled

Runs = Mapping[str, Sequence[Mapping[str, Any]]]
CONDITION_COLOURS = {
    "control": "#1b7837", "constraint": "#d95f02", "naive_clamp": "#b2182b", "mean_preserving_clamp": "#1f78b4",
    "high_wd": "#d95f02", "no_wd": "#1f78b4", "baseline": "#1b7837", "critical": "#b2182b", "random": "#1f78b4",
}


def _series(log: Mapping[str, Any], name: str) -> tuple[list[int], list[float]]:
    points = [(m["step"], m[name]) for m in log["metrics"] if m.get(name) is not None and math.isfinite(m[name])]
    return ([s for s, _ in points], [v for _, v in points]) if points else ([], [])


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this run", ha="center", va="center", transform=ax.transAxes, color="#666666")


@styled
def constraint_dynamics(runs: Runs) -> Figure:
    """Experiment A: Ψ (held-out accuracy), A_activation and σ² of the last layer's residual stream,
    and G of the heads the constraint freezes, over training steps, one colour per condition, one
    line per seed."""
    panels = (("psi_accuracy", "Ψ: held-out accuracy", False), ("A_activation_L{last}", "A: mean residual norm (last layer)", True),
              ("sigma_sq_L{last}", "σ²: centred residual variance (last layer)", True),
              ("G_frozen", "G of the frozen heads (1 − JS distance, 500 steps)", False))
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, (metric, title, log_scale) in zip(axes, panels):
        drawn = False
        for condition in ("control", "constraint", "naive_clamp", "mean_preserving_clamp"):
            for i, log in enumerate(runs.get(f"a_{condition}", [])):
                steps, values = _series(log, metric.format(last=int(log["summary"].get("n_layers") or 1) - 1))
                if steps:
                    ax.plot(steps, values, color=CONDITION_COLOURS[condition], alpha=0.85, lw=1.4,
                            label=condition.replace("_", " ") if i == 0 else None)
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel("training step")
        if log_scale and drawn:
            ax.set_yscale("log")
        if not drawn:
            _no_data(ax, metric)
    axes[0].legend(loc="best")
    fig.suptitle("Experiment A: three of four heads of each layer frozen; clamps after the final LayerNorm (lines: seeds)")
    fig.tight_layout()
    return fig


@styled
def grokking_phase(runs: Runs) -> Figure:
    """Experiment C: test and train accuracy and A_param over steps, and the phase diagram of
    test accuracy against A_param (the path of each run, coloured by step)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for condition in ("high_wd", "no_wd"):
        colour = CONDITION_COLOURS[condition]
        for i, log in enumerate(runs.get(f"c_{condition}", [])):
            label = condition.replace("_", " ") if i == 0 else None
            steps, test = _series(log, "test_accuracy")
            train_steps, train = _series(log, "train_accuracy")
            axes[0].plot(steps, test, color=colour, lw=1.6, label=f"{label} test" if label else None)
            axes[0].plot(train_steps, train, color=colour, lw=1, ls="--", label=f"{label} train" if label else None)
            a_steps, amplitude = _series(log, "A_param")
            axes[1].plot(a_steps, amplitude, color=colour, lw=1.6, label=label)
            transition = log["summary"].get("transition_step")
            if transition is not None:
                for ax in axes[:2]:
                    ax.axvline(transition, color=colour, ls=":", lw=1)
            joint = {s: v for s, v in zip(a_steps, amplitude)}
            pairs = [(joint[s], t, s) for s, t in zip(steps, test) if s in joint]
            if pairs:
                x, y, s = zip(*pairs)
                axes[2].plot(x, y, color=colour, lw=0.8, alpha=0.6, label=label)
                axes[2].scatter(x, y, c=s, cmap="viridis", s=10, zorder=3)
    axes[0].set(title="accuracy (dotted: transition step)", xlabel="step", ylabel="accuracy")
    axes[1].set(title="A_param: ‖W_V‖", xlabel="step")
    axes[2].set(title="phase diagram (points coloured by step)", xlabel="A_param", ylabel="test accuracy")
    for ax in axes:
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Experiment C: grokking with (high_wd) and without (no_wd) weight decay")
    fig.tight_layout()
    return fig


@styled
def grokking_fourier(runs: Runs) -> Figure:
    """Experiment C: the token embedding's norm per Fourier frequency of Z_p after training (key
    frequencies marked) against before training."""
    logs = [(condition, log) for condition in ("high_wd", "no_wd") for log in runs.get(f"c_{condition}", [])[:1]]
    fig, axes = plt.subplots(1, max(1, len(logs)), figsize=(7 * max(1, len(logs)), 4), squeeze=False)
    for ax, (condition, log) in zip(axes[0], logs):
        summary = log["summary"]
        norms = np.asarray(summary.get("fourier_norms") or [])
        initial = np.asarray(summary.get("initial_fourier_norms") or [])
        if norms.size == 0:
            _no_data(ax, "Fourier spectrum")
            continue
        freqs = np.arange(norms.size)
        keys = set(summary.get("key_frequencies") or [])
        ax.bar(freqs, norms, color=["#b2182b" if k in keys else "#999999" for k in freqs], label="after training")
        if initial.size == norms.size:
            ax.plot(freqs, initial, color="#1f78b4", lw=1, label="at initialisation")
        share = summary.get("key_frequency_share")
        ax.set(title=f"{condition.replace('_', ' ')}, seed {log['metadata']['seed']}: key frequencies {sorted(keys) or 'none'}"
               + (f" ({share:.0%} of the energy)" if share is not None else ""),
               xlabel="frequency k (0 = constant)", ylabel="embedding norm")
        ax.legend(fontsize=8)
    if not logs:
        _no_data(axes[0][0], "grokking run")
    fig.tight_layout()
    return fig


@styled
def superposition_variance(runs: Runs) -> Figure:
    """Experiment D: each unit's ablation effect (the identification) against its activation
    variance (the compared quantity), and box plots of the two groups' variances with the ratio
    and its bootstrap interval."""
    logs = runs.get("d_superposition", [])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    groups: dict[str, list[float]] = {"suppressor": [], "clean": []}
    threshold = None
    for log in logs:
        summary = log["summary"]
        threshold = (summary.get("settings") or {}).get("suppressor_threshold", threshold)
        for unit in summary.get("units", []):
            if unit["ablation_variance_ratio"] is None:
                continue
            role = unit["role"]
            left.scatter(unit["ablation_variance_ratio"], unit["activation_variance"], s=16,
                         color="#b2182b" if role == "suppressor" else "#1f78b4", alpha=0.8)
        groups["suppressor"] += summary.get("suppressor_variances", [])
        groups["clean"] += summary.get("clean_variances", [])
    if threshold is not None:
        left.axvline(threshold, color="#b2182b", ls="--", lw=1, label=f"suppressor threshold {threshold}")
        left.legend(fontsize=8)
    left.set(title="units: ablation effect vs activation variance", xlabel="output variance with the unit ablated / intact",
             ylabel="Var(h_j) (independent batch)")
    data = [values for values in groups.values()]
    labels = [f"{name}\n(n={len(values)})" for name, values in groups.items()]
    if any(data):
        right.boxplot([d if d else [np.nan] for d in data], tick_labels=labels, showmeans=True)
    else:
        _no_data(right, "units")
    notes = []
    for log in logs:
        s = log["summary"]
        ratio, ci = s.get("ratio"), s.get("ci95")
        text = f"seed {log['metadata']['seed']}: ratio " + ("undefined" if ratio is None else f"{ratio:.2f}")
        text += f", 95% CI [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else (f" ({s.get('note')})" if s.get("note") else "")
        notes.append(text)
    right.set(title="activation variance by group", ylabel="Var(h_j)")
    right.text(0.02, 0.98, "\n".join(notes), transform=right.transAxes, va="top", fontsize=8)
    fig.suptitle("Experiment D: suppressor units found by ablation in a toy model of superposition")
    fig.tight_layout()
    return fig


@styled
def ioi_compensation(runs: Runs) -> Figure:
    """Experiment B: per-head compensation (direct effect after / before ablation) in the layers
    after the ablated heads, for `critical` and `random` (first seed), and the self-repair
    decomposition of the logit-difference change for every condition."""
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = plt.subplots(1, 4, figsize=(21, 5), gridspec_kw={"width_ratios": [0.8, 1, 1, 1.1]})
    ax = axes[0]  # the original's Figure 2: the residual-norm ratio by layer, at the final position
    rows = [(c, runs[f"b_{c}"][0]["summary"].get("final_position_norm_ratio")) for c in ("baseline", "critical", "random")
            if runs.get(f"b_{c}")]
    rows = [(c, r) for c, r in rows if r]
    if rows:
        grid = np.array([r for _, r in rows], dtype=float).T  # [layers, conditions]
        spread = max(0.05, float(np.nanmax(np.abs(grid - 1.0))))
        image = ax.imshow(grid, cmap="RdBu_r", vmin=1 - spread, vmax=1 + spread, aspect="auto")
        ax.set_xticks(range(len(rows)), [c for c, _ in rows])
        ax.grid(False)
        fig.colorbar(image, ax=ax, fraction=0.06, label="‖resid_post‖ after / before (final position)")
        ax.set(title="residual norm by layer (final position)", ylabel="layer")
    else:
        _no_data(ax, "final-position norm ratios")
    for ax, condition in zip(axes[1:3], ("critical", "random")):
        logs = runs.get(f"b_{condition}", [])
        summary = logs[0]["summary"] if logs else {}
        matrix = summary.get("compensation")
        late = summary.get("late_layers") or []
        if not matrix or not late:
            _no_data(ax, f"{condition} compensation")
            continue
        first = min(late)
        ax.grid(False)
        ax.set_facecolor("#eeeeee")  # blank cells: direct effect before below the floor, no ratio
        values = np.array([[np.nan if v is None else v for v in row] for row in matrix[first:]], dtype=float)
        finite = values[np.isfinite(values)]
        low = min(-1.0, float(finite.min())) if finite.size else -1.0
        high = max(3.0, float(finite.max())) if finite.size else 3.0
        image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(vmin=low, vcenter=1.0, vmax=high), aspect="auto",
                          extent=(-0.5, values.shape[1] - 0.5, first + values.shape[0] - 0.5, first - 0.5))
        for head in summary.get("ablated_heads") or []:
            layer, index = (int(x) for x in str(head).split("."))
            if layer >= first:
                ax.scatter(index, layer, marker="x", color="black", s=40)
        fig.colorbar(image, ax=ax, fraction=0.046, label="direct effect after / before")
        ablated = ", ".join(str(h) for h in summary.get("ablated_heads") or [])
        recovered = summary.get("recovered_fraction")
        ax.set(title=f"{condition}: ablated {ablated} (x)\nrecovered fraction {'n/a' if recovered is None else f'{recovered:.2f}'}, "
                     f"late norm ratio {summary.get('late_final_position_norm_ratio') or float('nan'):.3f}",
               xlabel="head", ylabel="layer")
    ax = axes[3]
    parts = ("direct", "heads", "mlps", "norm")
    conditions = [c for c in ("baseline", "critical", "random") if runs.get(f"b_{c}")]
    width = 0.8 / max(1, len(parts))
    for j, part in enumerate(parts):
        heights = [runs[f"b_{c}"][0]["summary"]["decomposition"].get(part, 0.0) for c in conditions]
        ax.bar(np.arange(len(conditions)) + (j - 1.5) * width, heights, width, label=part)
    for i, c in enumerate(conditions):
        total = runs[f"b_{c}"][0]["summary"]["decomposition"].get("total", 0.0)
        ax.plot([i - 0.4, i + 0.4], [total, total], color="black", lw=2, label="total change" if i == 0 else None)
    ax.axhline(0, color="#444444", lw=0.8)
    ax.set_xticks(np.arange(len(conditions)), conditions)
    ax.set(title="change of the logit difference, decomposed\n(direct: the ablated heads; the rest: self-repair)",
           ylabel="Δ logit difference (IO − S)")
    ax.legend(fontsize=8)
    fig.suptitle("Experiment B: name-mover ablation on IOI prompts and the compensation downstream")
    fig.tight_layout()
    return fig
