"""Weight matching (Ainsworth et al., Git Re-Basin) over a permutation spec written as data.

A spec maps every state-dict entry to a tuple naming, per axis, the permutation acting on it
(or None). The inverse map, permutation -> the axes it touches, is derived from it. The matcher
knows nothing about any architecture.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from weightlab.errors import InputError

Axes = tuple[str | None, ...]


@dataclass(frozen=True)
class PermutationSpec:
    axes: dict[str, Axes]
    perm_to_axes: dict[str, list[tuple[str, int]]] = field(init=False)

    def __post_init__(self) -> None:
        inverse: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, axes in self.axes.items():
            for axis, perm in enumerate(axes):
                if perm is not None:
                    inverse[perm].append((name, axis))
        object.__setattr__(self, "perm_to_axes", dict(inverse))

    def check(self, state: Mapping[str, torch.Tensor]) -> None:
        """Fail with the offending names when the spec and a state dict disagree."""
        missing = sorted(set(state) - set(self.axes))
        extra = sorted(set(self.axes) - set(state))
        if missing or extra:
            raise InputError(
                f"permutation spec does not fit the model: entries without a spec {missing}, "
                f"spec entries absent from the model {extra}."
            )
        for name, axes in self.axes.items():
            if len(axes) != state[name].dim():
                raise InputError(f"spec for '{name}' names {len(axes)} axes but the tensor has {state[name].dim()}.")


def conv(name: str, p_in: str | None, p_out: str | None, bias: bool = False) -> dict[str, Axes]:
    spec: dict[str, Axes] = {f"{name}.weight": (p_out, p_in, None, None)}
    if bias:
        spec[f"{name}.bias"] = (p_out,)
    return spec


def norm(name: str, p: str | None, running_stats: bool = True) -> dict[str, Axes]:
    spec: dict[str, Axes] = {f"{name}.weight": (p,), f"{name}.bias": (p,)}
    if running_stats:
        spec.update({f"{name}.running_mean": (p,), f"{name}.running_var": (p,), f"{name}.num_batches_tracked": ()})
    return spec


def dense(name: str, p_in: str | None, p_out: str | None, bias: bool = True) -> dict[str, Axes]:
    spec: dict[str, Axes] = {f"{name}.weight": (p_out, p_in)}
    if bias:
        spec[f"{name}.bias"] = (p_out,)
    return spec


def permute_tensor(
    spec: PermutationSpec, perms: Mapping[str, np.ndarray], name: str, tensor: torch.Tensor,
    except_axis: int | None = None,
) -> torch.Tensor:
    for axis, perm in enumerate(spec.axes[name]):
        if perm is not None and axis != except_axis:
            tensor = torch.index_select(tensor, axis, torch.as_tensor(perms[perm], device=tensor.device))
    return tensor


def apply_permutation(
    spec: PermutationSpec, perms: Mapping[str, np.ndarray], state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The state dict of the same network with its hidden units reordered by `perms`."""
    return {name: permute_tensor(spec, perms, name, tensor) for name, tensor in state.items()}


def _perm_sizes(spec: PermutationSpec, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    return {perm: state[axes[0][0]].shape[axes[0][1]] for perm, axes in spec.perm_to_axes.items()}


@dataclass
class MatchResult:
    perms: dict[str, np.ndarray]
    iterations: int
    objective: float
    objective_history: list[float]

    def fraction_moved(self) -> dict[str, float]:
        """Per permutation, the fraction of units that moved (0 for the identity)."""
        return {name: float((perm != np.arange(len(perm))).mean()) for name, perm in self.perms.items()}


def weight_matching(
    spec: PermutationSpec,
    params_a: Mapping[str, torch.Tensor],
    params_b: Mapping[str, torch.Tensor],
    max_iter: int = 100,
    seed: int = 0,
) -> MatchResult:
    """Permutations of B's units maximising sum over weights of <W_a, P W_b>, by coordinate
    descent: each permutation in turn is a linear assignment with the others fixed, until a
    full sweep improves none. Entries of the spec absent from `params_a` (e.g. BatchNorm
    running statistics) are permuted afterwards but do not enter the objective.
    """
    sizes = _perm_sizes(spec, params_b)
    a = {k: v.detach().double().cpu() for k, v in params_a.items()}
    b = {k: v.detach().double().cpu() for k, v in params_b.items()}
    perms = {p: np.arange(n) for p, n in sizes.items()}
    rng = np.random.default_rng(seed)
    history: list[float] = []
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        improved = False
        for perm in rng.permutation(sorted(sizes)):
            n = sizes[perm]
            similarity = np.zeros((n, n))
            for name, axis in spec.perm_to_axes[perm]:
                if name not in a:
                    continue
                w_a = torch.movedim(a[name], axis, 0).reshape(n, -1)
                w_b = torch.movedim(permute_tensor(spec, perms, name, b[name], except_axis=axis), axis, 0).reshape(n, -1)
                similarity += (w_a @ w_b.T).numpy()
            _, assignment = linear_sum_assignment(similarity, maximize=True)
            old = similarity[np.arange(n), perms[perm]].sum()
            new = similarity[np.arange(n), assignment].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                improved = True
                perms[perm] = assignment
        history.append(_objective(spec, perms, a, b))
        if not improved:
            break
    return MatchResult(perms, iteration, history[-1], history)


def _objective(spec: PermutationSpec, perms: Mapping[str, np.ndarray], a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    return float(sum(torch.sum(a[name] * permute_tensor(spec, perms, name, b[name])) for name in a))
