"""The weight unit (``drift.unit: weight``): single weights as Wei et al. (2024) and the original
extension score them, where the default unit is one output row of one projection.

A weight is named by its module and its **flat index** ``i·in_features + j`` in the row-major
weight W (out_features × in_features), the index ``torch.topk(W_metric.flatten(), k)`` returns in
Wei et al.'s ``prune_wandg_set_difference``. So a group of weights is a `groups.Group` (module ->
flat indices) and `groups.build_groups` builds the weight groups unchanged from flattened score
arrays (`snip.unit_scores`): top-k per module over the module's flattened scores, k = floor(fraction ·
numel), as Wei et al. take ``int(p · numel)``.

Drift of a weight comes from the float32 LoRA factors in float64, as for rows:
ΔW_ij = (α/r)·(B·A)_ij = (α/r)·Σ_k B_ik·A_kj, minus its value at the start. Its measures are the
L2 change |ΔW_ij| and the relative change |ΔW_ij| / |W_ij| (W the effective weight at the start;
NaN for a zero weight, counted, never 0) and its magnitude |W_ij| (the norm the controls are
matched on). **The cosine change is undefined for a scalar** (a weight has no direction to turn),
so this unit is read on L2 and relative change.

The model's trained modules hold about 106M weights (SmolLM2-135M), too many to analyse whole: the
analysis population is every group weight plus a seeded sample of `sample` other weights per
module (`population_ids`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from weightlab.drift.drift import DriftTracker, adapter_matrices, lora_layers
from weightlab.drift.groups import Group, count, restrict
from weightlab.errors import InputError

WEIGHT_MEASURES = ("l2", "relative", "norm")  # norm: the weight's initial magnitude |W_ij|; no cosine for a scalar


def flat_index(rows: np.ndarray, cols: np.ndarray, in_features: int) -> np.ndarray:
    """The flat indices of weights (rows[k], cols[k]) of a module with `in_features` inputs."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if np.any((cols < 0) | (cols >= in_features)) or np.any(rows < 0):
        raise InputError(f"weight positions outside a module of {in_features} inputs.")
    return rows * in_features + cols


def row_col(ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of flat weight indices of a module with `in_features` inputs."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids // in_features, ids % in_features


def lora_weight_delta(a: torch.Tensor, b: torch.Tensor, scale: float, ids: np.ndarray) -> np.ndarray:
    """(α/r)·(B·A)_ij of the weights `ids` (flat indices), in float64, without forming B·A:
    A is (r, in_features), B (out_features, r)."""
    rows, cols = row_col(ids, a.shape[1])
    if len(rows) and int(rows.max()) >= b.shape[0]:
        raise InputError(f"weight index {int(np.max(ids))} outside a module of {b.shape[0]}×{a.shape[1]} weights.")
    r_index, c_index = torch.as_tensor(rows), torch.as_tensor(cols)
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    return (scale * (b64[r_index] * a64[:, c_index].T).sum(dim=1)).numpy()


def weight_drift(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float, ids: np.ndarray,
                 a0: torch.Tensor | None = None, b0: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per weight of `ids` (flat indices into `base`, out_features × in_features): the change
    ΔW_ij = (α/r)·((B·A)_ij − (B0·A0)_ij) of the effective weight since the start (A0, B0: the
    factors then; none: B0 = 0, LoRA's start), its L2 change |ΔW_ij|, relative change
    |ΔW_ij| / |W_ij| (W the effective weight at the start; NaN where it is 0) and |W_ij| ("norm")."""
    if base.dim() != 2 or base.shape[1] != a.shape[1] or base.shape[0] != b.shape[0]:
        raise InputError(f"a {tuple(base.shape)} weight with LoRA factors A {tuple(a.shape)}, B {tuple(b.shape)} do not fit.")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= base.numel()):
        raise InputError(f"weight indices outside a {tuple(base.shape)} weight (0..{base.numel() - 1}); rebuild the weight groups.")
    rows, cols = row_col(ids, base.shape[1])
    initial = base.detach().double().cpu()[torch.as_tensor(rows), torch.as_tensor(cols)].numpy()
    delta = lora_weight_delta(a, b, scale, ids)
    if a0 is not None and b0 is not None:
        start = lora_weight_delta(a0, b0, scale, ids)
        initial, delta = initial + start, delta - start
    magnitude = np.abs(initial)
    l2 = np.abs(delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(magnitude > 0, l2 / np.where(magnitude > 0, magnitude, 1.0), np.nan)
    return {"l2": l2, "relative": relative, "norm": magnitude}


def population_ids(sizes: Mapping[str, int], groups: Mapping[str, Group], sample: int, seed: int) -> dict[str, np.ndarray]:
    """Per module (`sizes`: module -> weights), the weights the analysis reads: every weight of
    every group there, plus `sample` weights drawn uniformly without replacement (seeded by `seed`
    and the module's position in `sizes`) from the module's weights in no group (all of them when
    fewer are left). Sorted flat indices, no repeat."""
    if sample < 0:
        raise InputError(f"drift.weight_sample must be >= 0, got {sample}.")
    out: dict[str, np.ndarray] = {}
    for index, (module, n) in enumerate(sizes.items()):
        parts = [np.asarray(group.get(module, []), dtype=np.int64) for group in groups.values()]
        taken = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        if len(taken) and (taken.min() < 0 or taken.max() >= n):
            raise InputError(f"a group names weights outside {module} (0..{n - 1}); rebuild the neuron groups.")
        free = np.setdiff1d(np.arange(n, dtype=np.int64), taken, assume_unique=True)
        rng = np.random.default_rng([seed, 13, index])
        drawn = rng.choice(free, size=min(sample, len(free)), replace=False) if len(free) else free
        out[module] = np.union1d(taken, drawn).astype(np.int64)
    return out


def weight_population(modules: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Group], sample: int, seed: int) -> dict[str, Any]:
    """The analysis population of the weight unit, in `DriftTracker.population`'s form: per
    module (in `modules`' order; each a mapping with the frozen ``base`` weight, the adapter's
    current ``a``, ``b``, its ``scale`` and, optional, the start's ``a0``, ``b0``) the drift of
    `population_ids`' weights: the measures of `weight_drift`, ``module_index``, ``row`` (the flat
    index), the module names ``modules`` and each group's membership ``in:<group>``."""
    sizes = {name: int(m["base"].numel()) for name, m in modules.items()}
    ids = population_ids(sizes, groups, sample, seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*WEIGHT_MEASURES, "module_index", "row")}
    members: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for index, (name, m) in enumerate(modules.items()):
        values = weight_drift(m["base"], m["a"], m["b"], float(m["scale"]), ids[name], m.get("a0"), m.get("b0"))
        for measure in WEIGHT_MEASURES:
            parts[measure].append(values[measure])
        parts["module_index"].append(np.full(len(ids[name]), index, dtype=np.int32))
        parts["row"].append(ids[name])
        for group_name, group in groups.items():
            members[group_name].append(np.isin(ids[name], np.asarray(group.get(name, []), dtype=np.int64)))
    out: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    out["modules"] = list(modules)
    out.update({f"in:{g}": np.concatenate(v) if v else np.zeros(0, bool) for g, v in members.items()})
    return out


def base_weight(layer: Any) -> torch.Tensor:
    """The frozen base weight of a LoRA layer, out_features × in_features (as the model holds it)."""
    weight = layer.get_base_layer().weight.detach()
    return weight.T if getattr(layer, "fan_in_fan_out", False) else weight


class WeightDriftTracker:
    """`drift.DriftTracker` for the weight unit: per-weight drift of weight groups (module -> flat
    indices) in a LoRA-wrapped model against the state it had when the tracker was made, from the
    LoRA factors (`weight_drift`); groups are restricted to the modules that carry an adapter. The
    population is every group weight plus `sample` other weights per module (`population_ids`)."""

    def __init__(self, model: torch.nn.Module, groups: Mapping[str, Group], sample: int, seed: int = 0) -> None:
        self.layers = lora_layers(model)
        self.trained_modules = sorted(self.layers)
        self.groups = {name: restrict(group, self.layers) for name, group in groups.items()}
        self.excluded = {name: count(groups[name]) - count(self.groups[name]) for name in groups}
        self.sample, self.seed = sample, seed
        ids: dict[str, np.ndarray] = {}
        for group in self.groups.values():
            for module, r in group.items():
                ids[module] = np.union1d(ids.get(module, np.zeros(0, np.int64)), np.asarray(r, dtype=np.int64))
        self.ids = {m: r for m, r in ids.items() if len(r)}
        self.initial_adapters = {m: adapter_matrices(layer) for m, layer in self.layers.items()}
        for group_name, group in self.groups.items():
            if count(group) == 0:
                raise InputError(f"weight group '{group_name}' has no weight in the modules LoRA trains ({self.trained_modules[:3]}...); widen lora.target_modules.")

    def _state(self, module: str) -> dict[str, Any]:
        layer = self.layers[module]
        a0, b0, scale = self.initial_adapters[module]
        a, b, _ = adapter_matrices(layer)
        return {"base": base_weight(layer), "a": a, "b": b, "scale": scale, "a0": a0, "b0": b0}

    def measure(self) -> dict[str, dict[str, np.ndarray]]:
        """Per group and measure (`WEIGHT_MEASURES`), the per-weight values (modules in sorted
        order, weights as stored)."""
        by_module = {}
        for module, ids in self.ids.items():
            m = self._state(module)
            by_module[module] = weight_drift(m["base"], m["a"], m["b"], m["scale"], ids, m["a0"], m["b0"])
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, group in self.groups.items():
            parts: dict[str, list[np.ndarray]] = {k: [] for k in WEIGHT_MEASURES}
            for module in sorted(group):
                if not len(group[module]):
                    continue
                where = np.searchsorted(self.ids[module], np.asarray(group[module], dtype=np.int64))
                for measure in WEIGHT_MEASURES:
                    parts[measure].append(by_module[module][measure][where])
            out[name] = {k: np.concatenate(v) for k, v in parts.items()}
        return out

    summarise = staticmethod(DriftTracker.summarise)

    def module_labels(self, group: str) -> list[str]:
        """The module of each weight of `group`, in `measure`'s order."""
        return [m for m in sorted(self.groups[group]) for _ in range(len(self.groups[group][m]))]

    def population(self) -> dict[str, Any]:
        """`weight_population` of the trained modules: every group weight and the seeded sample."""
        return weight_population({m: self._state(m) for m in self.trained_modules}, self.groups, self.sample, self.seed)
