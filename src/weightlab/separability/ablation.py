"""Experiment B's heads and head-ablation hooks (TransformerLens hook points, no model edits).

A `Head` is addressed as TransformerLens names it ('9.9' = layer 9, head 9). `head_ablation_hook`
is a hook on ``blocks.L.attn.hook_z`` that replaces the slice of the chosen heads only: `mean`
(the head's mean z over the ABC prompts of the same template, per position), `zero`, or
`resample` (z of a seeded random ABC prompt of the same template); `ablation_values` computes
those replacements from the ABC run's z (`weightlab.separability.prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from weightlab.errors import InputError

ABLATIONS = ("mean", "zero", "resample")


@dataclass(frozen=True, order=True)
class Head:
    """An attention head, addressed as TransformerLens names it ('9.9' = layer 9, head 9)."""

    layer: int
    head: int

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"

    @classmethod
    def parse(cls, value: Any) -> Head:
        """From '9.9', [9, 9] or {"layer": 9, "head": 9}."""
        if isinstance(value, Mapping):
            return cls(int(value["layer"]), int(value["head"]))
        if isinstance(value, str):
            layer, head = value.split(".")
            return cls(int(layer), int(head))
        layer, head = value
        return cls(int(layer), int(head))


def z_hook_name(layer: int) -> str:
    """The per-head attention output before W_O: [batch, pos, head, d_head]."""
    return f"blocks.{layer}.attn.hook_z"


def per_head(z: torch.Tensor, n_heads: int) -> torch.Tensor:
    """hook_z as [batch, pos, head, d_head] (some bridges fire it flat, [batch, pos, head·d_head])."""
    return z if z.dim() == 4 else z.view(*z.shape[:2], n_heads, -1)


def head_ablation_hook(values: Mapping[int, torch.Tensor | None], n_heads: int) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """A hook for one layer's ``hook_z`` that replaces the slice of each head in `values` by its
    value ([batch, pos, d_head], broadcastable; None = zero) and leaves every other head as is."""

    def hook(z: torch.Tensor, hook: Any = None) -> torch.Tensor:
        out = per_head(z, n_heads).clone()
        for head, value in values.items():
            out[:, :, head] = 0.0 if value is None else value.to(out.dtype).to(out.device)
        return out.view_as(z)

    return hook


def ablation_values(
    method: str, corrupted_z: torch.Tensor | None, groups: torch.Tensor, generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """What replaces one head's z ([n, pos, d_head]) on the n clean prompts: None for `zero`; for
    `mean`, the mean over the ABC prompts of the same template (`groups`, [n]), per position; for
    `resample`, the z of a random ABC prompt of the same template. The ABC set is aligned with the
    clean prompts (row i is the twin of clean prompt i)."""
    if method == "zero":
        return None
    if method not in ABLATIONS:
        raise InputError(f"unknown ablation '{method}'; use one of {', '.join(ABLATIONS)}.")
    if corrupted_z is None:
        raise InputError(f"ablation '{method}' needs the head's activations on the ABC set.")
    values = torch.empty_like(corrupted_z)
    for group in torch.unique(groups):
        members = torch.nonzero(groups == group).flatten()
        if method == "mean":
            values[members] = corrupted_z[members].mean(0, keepdim=True)
        else:
            pick = torch.randint(0, len(members), (len(members),), generator=generator)
            values[members] = corrupted_z[members[pick]]
    return values


def ablation_hooks(
    ablations: Mapping[Head, torch.Tensor | None], n_heads: int, rows: slice,
) -> list[tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]]:
    """Named hooks (one per layer) ablating `ablations` for the prompts `rows` of the dataset."""
    by_layer: dict[int, dict[int, torch.Tensor | None]] = {}
    for head, value in ablations.items():
        part = None if value is None else value[rows]
        by_layer.setdefault(head.layer, {})[head.head] = part
    return [(z_hook_name(layer), head_ablation_hook(values, n_heads)) for layer, values in sorted(by_layer.items())]
