"""Drift of tracked neurons under LoRA: each neuron's **effective** weights W + (alpha/r)·B·A against
its initial ones, computed from the float32 adapters and the base weights in float64.

Two flaws of the original extension are designed out here:

- it merged bf16 weights and subtracted them, so changes below bf16's resolution (8 bits of
  mantissa) vanished and the median change was 0 for every group; here the change of a row is
  (alpha/r)·B[row]·A itself (minus its value at the start), never a difference of two rounded
  matrices, and the angle comes from the change's components, so 1 − cos stays exact when tiny;
- it tracked neurons in modules LoRA never touched, which cannot move; here groups are restricted
  to the modules that carry an adapter (`DriftTracker.excluded` says how many neurons that drops).

The relative change is ‖Δrow‖/‖row‖ of a whole row, never element-wise (which divides by
near-zero weights); a zero row gives NaN (counted, never silently 0).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from weightlab.drift.groups import Group, count, restrict
from weightlab.drift.snip import canonical_name
from weightlab.errors import InputError

STAT_KEYS = ("mean", "std", "median", "q05", "q25", "q75", "q95", "min", "max")
MEASURES = ("cosine", "cosine_distance", "l2", "relative", "norm")  # norm: the row's initial L2 norm


def drift_from_delta(initial: torch.Tensor, delta: torch.Tensor) -> dict[str, np.ndarray]:
    """Per row: cosine similarity of initial and initial + delta, 1 − cosine (computed from the
    angle, exact for tiny changes), L2 norm of delta, and ‖delta‖/‖initial‖; in float64."""
    w = initial.double()
    d = delta.double()
    norm_w = w.norm(dim=1)
    unit = w / norm_w.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(1)
    along = (d * unit).sum(dim=1)
    across = (d - along.unsqueeze(1) * unit).norm(dim=1)
    angle = torch.atan2(across, norm_w + along)
    l2 = d.norm(dim=1)
    zero = norm_w == 0
    nan = torch.full_like(l2, float("nan"))
    return {
        "cosine": torch.where(zero, nan, torch.cos(angle)).numpy(),
        "cosine_distance": torch.where(zero, nan, 2 * torch.sin(angle / 2) ** 2).numpy(),
        "l2": l2.numpy(),
        "relative": torch.where(zero, nan, l2 / norm_w).numpy(),
        "norm": norm_w.numpy(),
    }


def row_drift(initial: torch.Tensor, current: torch.Tensor) -> dict[str, np.ndarray]:
    """`drift_from_delta` of two weight matrices (rows are neurons), the change taken in float64."""
    if initial.shape != current.shape:
        raise InputError(f"initial and current weights differ in shape: {tuple(initial.shape)} vs {tuple(current.shape)}.")
    return drift_from_delta(initial, current.double() - initial.double())


def aggregate(values: np.ndarray) -> dict[str, float | int]:
    """n, NaN count, mean, std (population), median, 5/25/75/95% quantiles, min and max of the
    finite values (None when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"n": int(finite.size), "n_nan": int(values.size - finite.size)}
    if finite.size == 0:
        return {**out, **{k: None for k in STAT_KEYS}}
    q = np.quantile(finite, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {**out, "mean": float(finite.mean()), "std": float(finite.std()), "median": float(q[2]), "q05": float(q[0]),
            "q25": float(q[1]), "q75": float(q[3]), "q95": float(q[4]), "min": float(finite.min()), "max": float(finite.max())}


# --- LoRA layers --------------------------------------------------------------------------------


def lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    """Every module carrying a LoRA adapter, by the canonical name of the projection it wraps."""
    from peft.tuners.lora import LoraLayer

    layers = {canonical_name(name): module for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    if not layers:
        raise InputError("the model carries no LoRA adapter; wrap it with weightlab.drift.lora.wrap_lora first.")
    return layers


def _adapter(layer: Any) -> str:
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1:
        raise InputError(f"drift needs exactly one active LoRA adapter per layer, found {active}.")
    if getattr(layer, "use_dora", {}).get(active[0], False):
        raise InputError("DoRA adapters rescale whole rows; the drift here is defined for plain LoRA (use_dora: false).")
    return active[0]


def lora_row_delta(layer: Any, rows: torch.Tensor) -> torch.Tensor:
    """(alpha/r)·B[rows]·A of a LoRA layer, in float64 (rows of the effective weight change)."""
    adapter = _adapter(layer)
    a = layer.lora_A[adapter].weight.detach().double()
    b = layer.lora_B[adapter].weight.detach().double()
    scale = float(layer.scaling[adapter])
    return scale * (b[rows.to(b.device)] @ a).cpu()  # B is (out, r) also for Conv1D-style (fan_in_fan_out) bases


def adapter_matrices(layer: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B, alpha/r) of a LoRA layer's active adapter: float64 copies on the CPU."""
    adapter = _adapter(layer)
    return (layer.lora_A[adapter].weight.detach().double().cpu().clone(),
            layer.lora_B[adapter].weight.detach().double().cpu().clone(), float(layer.scaling[adapter]))


def base_rows(layer: Any, rows: torch.Tensor) -> torch.Tensor:
    """The rows (output neurons) of the frozen base weight, in float64 on the CPU."""
    weight = layer.get_base_layer().weight.detach()
    if getattr(layer, "fan_in_fan_out", False):
        weight = weight.T
    return weight[rows.to(weight.device)].double().cpu()


def effective_rows(layer: Any, rows: torch.Tensor) -> torch.Tensor:
    """Rows of the effective weight W + (alpha/r)·B·A, in float64."""
    return base_rows(layer, rows) + lora_row_delta(layer, rows)


class DriftTracker:
    """Per-neuron drift of neuron groups in a LoRA-wrapped model against the state it had when
    the tracker was made. Groups are restricted to the modules that carry an adapter."""

    def __init__(self, model: torch.nn.Module, groups: Mapping[str, Group]) -> None:
        self.layers = lora_layers(model)
        self.trained_modules = sorted(self.layers)
        self.groups = {name: restrict(group, self.layers) for name, group in groups.items()}
        self.excluded = {name: count(groups[name]) - count(self.groups[name]) for name in groups}
        rows: dict[str, np.ndarray] = {}
        for group in self.groups.values():
            for module, r in group.items():
                rows[module] = np.union1d(rows.get(module, np.zeros(0, np.int64)), r)
        self.rows = {m: torch.as_tensor(r, dtype=torch.long) for m, r in rows.items() if len(r)}
        self.initial = {m: base_rows(self.layers[m], r).float() for m, r in self.rows.items()}  # float32 copy is exact for bf16/fp32 bases
        self.initial_delta = {m: lora_row_delta(self.layers[m], r) for m, r in self.rows.items()}
        self.initial_adapters = {m: adapter_matrices(layer) for m, layer in self.layers.items()}
        for group_name, group in self.groups.items():
            if count(group) == 0:
                raise InputError(f"neuron group '{group_name}' has no neuron in the modules LoRA trains ({self.trained_modules[:3]}...); widen lora.target_modules.")

    def population(self) -> dict[str, np.ndarray | list[str]]:
        """The drift of **every** neuron of every trained module (not only the tracked groups):
        each measure as one array over all rows, with each row's module (an index into
        ``modules``) and row number, and each tracked group's membership (``in:<group>``, a
        mask). The norm-matched controls and the regression are drawn from it."""
        modules = self.trained_modules
        parts: dict[str, list[np.ndarray]] = {m: [] for m in (*MEASURES, "module_index", "row")}
        for index, module in enumerate(modules):
            layer = self.layers[module]
            a0, b0, scale = self.initial_adapters[module]
            a, b, _ = adapter_matrices(layer)
            weight = layer.get_base_layer().weight.detach()
            if getattr(layer, "fan_in_fan_out", False):
                weight = weight.T
            initial = weight.double().cpu() + scale * (b0 @ a0)
            values = drift_from_delta(initial, scale * (b @ a - b0 @ a0))
            for measure in MEASURES:
                parts[measure].append(values[measure])
            parts["module_index"].append(np.full(initial.shape[0], index, dtype=np.int32))
            parts["row"].append(np.arange(initial.shape[0], dtype=np.int32))
        out: dict[str, np.ndarray | list[str]] = {**{k: np.concatenate(v) for k, v in parts.items()}, "modules": list(modules)}
        for name, group in self.groups.items():  # each group's membership, a mask over the population
            member = np.zeros(len(out["row"]), dtype=bool)
            offsets = np.cumsum([0] + [len(r) for r in parts["row"]])
            for index, module in enumerate(modules):
                rows = np.asarray(group.get(module, []), dtype=np.int64)
                member[offsets[index] + rows] = True
            out[f"in:{name}"] = member
        return out

    def _position(self, module: str, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.rows[module].numpy(), rows)

    def measure(self) -> dict[str, dict[str, np.ndarray]]:
        """Per group and measure, the per-neuron values (modules in sorted order, rows as stored)."""
        by_module = {}
        for module, rows in self.rows.items():
            layer = self.layers[module]
            initial = self.initial[module].double() + self.initial_delta[module]
            delta = lora_row_delta(layer, rows) - self.initial_delta[module]
            by_module[module] = drift_from_delta(initial, delta)
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, group in self.groups.items():
            parts: dict[str, list[np.ndarray]] = {m: [] for m in MEASURES}
            for module in sorted(group):
                if not len(group[module]):
                    continue
                where = self._position(module, np.asarray(group[module]))
                for measure in MEASURES:
                    parts[measure].append(by_module[module][measure][where])
            out[name] = {m: np.concatenate(v) for m, v in parts.items()}
        return out

    @staticmethod
    def summarise(values: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, dict[str, Any]]]:
        """`aggregate` of every group's every measure."""
        return {group: {m: aggregate(v) for m, v in measures.items()} for group, measures in values.items()}

    def module_labels(self, group: str) -> list[str]:
        """The module of each neuron of `group`, in `measure`'s order."""
        return [m for m in sorted(self.groups[group]) for _ in range(len(self.groups[group][m]))]
