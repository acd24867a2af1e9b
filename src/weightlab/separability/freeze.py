"""Per-head freezing (experiment A's constraint).

Heads `heads` of each layer in `layers` keep their initial slices of W_Q, W_K, W_V, W_O and b_Q, b_K,
b_V: their gradients are zeroed, so Adam's moments stay zero and its step is exactly zero, and the
slices are copied back after every step as well. This freezes **weights, not routing**: the layer
norms, the embeddings, b_O and every free head still train, so what a frozen head reads (its
queries and keys) changes and its attention pattern keeps moving; its G is measured, not assumed.
(The original froze the whole attention layer of its 1-layer model.)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from weightlab.errors import InputError

HEAD_PARAMS = ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O")  # the per-head slices (index 0 = head)


class HeadFreeze:
    """Freeze heads of attention layers at their current values, slice by slice.

    Each parameter in `HEAD_PARAMS` ([head, ...]) of each frozen layer gets a gradient hook that
    zeroes the frozen heads' rows; `restore` copies the saved slices back after each step as well, so
    no optimiser setting can move them. `report` measures what changed since the freeze. `params`
    maps ``blocks.<layer>.attn.<name>`` to the parameter."""

    def __init__(self, model: Any, heads: Sequence[int], layers: Sequence[int] = (0,)):
        n_layers = len(model.blocks)
        self.layers = sorted({int(layer) for layer in layers}) if heads else []
        if any(not 0 <= layer < n_layers for layer in self.layers):
            raise InputError(f"frozen layers {self.layers} are outside 0..{n_layers - 1}.")
        self.params = {f"blocks.{layer}.attn.{name}": getattr(model.blocks[layer].attn, name)
                       for layer in self.layers for name in HEAD_PARAMS}
        n_heads = model.blocks[0].attn.W_Q.shape[0]
        self.frozen = sorted({int(h) for h in heads})
        if any(not 0 <= h < n_heads for h in self.frozen):
            raise InputError(f"frozen heads {self.frozen} are outside 0..{n_heads - 1}.")
        self.free = [h for h in range(n_heads) if h not in self.frozen]
        self.initial = {name: p.detach().clone() for name, p in self.params.items()}
        self._handles = [p.register_hook(self._mask) for p in self.params.values()] if self.frozen else []

    def _mask(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[self.frozen] = 0
        return grad

    def frozen_units(self) -> list[tuple[int, int]]:
        """(layer, head) of every frozen head."""
        return [(layer, head) for layer in self.layers for head in self.frozen]

    @torch.no_grad()
    def restore(self) -> None:
        for name, param in self.params.items():
            if self.frozen:
                param[self.frozen] = self.initial[name][self.frozen]

    @torch.no_grad()
    def report(self) -> dict[str, Any]:
        """Whether every frozen slice is bit-identical to its initial value, and the largest absolute
        change of the frozen and of the free slices of the frozen layers (None where there are none)."""

        def max_change(heads: list[int]) -> float | None:
            if not heads or not self.params:
                return None
            return max(float((p[heads] - self.initial[n][heads]).abs().max()) for n, p in self.params.items())

        identical = all(torch.equal(p[self.frozen], self.initial[n][self.frozen]) for n, p in self.params.items())
        return {
            "frozen_slices_identical": identical if self.frozen else None,
            "max_abs_change_frozen": max_change(self.frozen),
            "max_abs_change_free": max_change(self.free),
        }

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
