"""The repair LP of one linear layer of a classifier (PRDNN / APRNN style), built with scipy.sparse.

Given edit points (their inputs to the network's `classifier` and their labels), find changes
dW, db of one Linear layer of the classifier such that every point gets
logit[y] >= logit[c] + margin for all c != y, every change is within +-param_bound, and the
largest change t = max |delta| is as small as possible:

    minimise t  s.t.  margin rows,  -t <= delta_i <= t,  -B <= delta_i <= B.

Objectives (`repair.lp.objective`):

- ``linf+l1_normalized`` (default, the original study's): sytorch's norm ``linf+l1_normalized``
  of the concatenation v of the edit points' logit changes and the parameter changes,
  ``max_i |v_i| + sum_i |v_i| / len(v)`` (sytorch ``SymbolicLPArray.norm_ub``: ``abs_ub().sum()
  / size + abs_ub().max_ub()``; the original's ``edits/repair.py`` minimises it over
  ``cat([output_deltas, param_deltas])``). Charging the logit changes keeps the repaired
  network's outputs near the original's, not only its weights;
- ``linf``: t = max |delta| over the parameters only (a vertex that moves nearly every weight);
- ``linf+l1``: t + mean |delta| over the parameters only (PRDNN's normalised sum).

The logits are affine in the layer's parameters when the layer is the last one. For an earlier
layer, each point's ReLU pattern downstream of the layer is fixed to the one the original
network has (APRNN's linearisation): one auxiliary variable per pre-activation, tied to the
layer's output by an equality row, with a sign bound that keeps the assumed pattern, so the LP
is exact for the repaired network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from weightlab.errors import InputError

OBJECTIVES = ("linf+l1_normalized", "linf", "linf+l1")  # see the module doc
PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)  # identity maps in eval mode on flat inputs


@dataclass(frozen=True)
class LinearProgram:
    """minimise cost @ x  s.t.  row_lower <= matrix @ x <= row_upper, col_lower <= x <= col_upper.

    Columns: the layer's weight changes (row-major), its bias changes, t, then auxiliaries."""

    cost: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    num_params: int

    @property
    def num_vars(self) -> int:
        return self.matrix.shape[1]

    @property
    def num_constraints(self) -> int:
        return self.matrix.shape[0]

    @property
    def t_index(self) -> int:
        return self.num_params


@dataclass(frozen=True)
class HeadSplit:
    """A classifier cut at the repaired layer: inputs to the layer and what follows it."""

    layer_name: str
    layer: nn.Linear
    layer_inputs: np.ndarray  # (n, in) float64, computed in float32 as the model does
    downstream: list[tuple[str, nn.Module]]


def linear_layers(head: nn.Sequential) -> list[str]:
    return [name for name, module in head.named_children() if isinstance(module, nn.Linear)]


def resolve_layer(head: nn.Sequential, layer: str) -> str:
    """'last' or a Linear child's name of the classifier, checked."""
    names = linear_layers(head)
    if not names:
        raise InputError("the classifier has no Linear layer to repair.")
    name = names[-1] if layer == "last" else layer
    if name not in names:
        raise InputError(f"repair.lp.layer '{layer}' is not a linear layer of the classifier; choose one of {names} or last.")
    return name


@torch.no_grad()
def split_head(head: nn.Sequential, layer: str, head_inputs: torch.Tensor) -> HeadSplit:
    """Run the classifier up to `layer` (float32, eval mode) and keep the modules after it."""
    name = resolve_layer(head, layer)
    children = list(head.named_children())
    position = [n for n, _ in children].index(name)
    x = head_inputs.float()
    for _, module in children[:position]:
        x = module.eval()(x)
    downstream = children[position + 1:]
    for child_name, module in downstream:
        if not isinstance(module, (nn.Linear, nn.ReLU) + PASS_THROUGH):
            raise InputError(
                f"module {child_name} ({type(module).__name__}) follows the repaired layer; only Linear, "
                "ReLU and Dropout can be linearised. Repair a later layer."
            )
    return HeadSplit(name, getattr(head, name), x.double().numpy(), downstream)


@torch.no_grad()
def relu_patterns(split: HeadSplit) -> list[np.ndarray]:
    """Pre-activations of every ReLU after the layer, per edit point, in the original network."""
    x = split.layer(torch.from_numpy(split.layer_inputs).float())
    found = []
    for _, module in split.downstream:
        if isinstance(module, nn.ReLU):
            found.append(x.double().numpy())
        x = module.eval()(x)
    return found


def layer_output_expression(inputs: np.ndarray, weight: np.ndarray, bias: np.ndarray, num_vars: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """z_p = (W + dW) a_p + (b + db) as a sparse matrix over the variables plus a constant."""
    n, width_in = inputs.shape
    width_out = weight.shape[0]
    rows = np.concatenate([np.arange(n * width_out).repeat(width_in), np.arange(n * width_out)])
    cols = np.concatenate([np.tile(np.arange(width_out * width_in), n), width_out * width_in + np.tile(np.arange(width_out), n)])
    values = np.concatenate([np.repeat(inputs, width_out, axis=0).ravel(), np.ones(n * width_out)])
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n * width_out, num_vars))
    constant = (inputs @ weight.T + bias).ravel()
    return matrix, constant


def _pad_columns(matrix: sp.spmatrix, num_vars: int) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix)
    matrix.resize((matrix.shape[0], num_vars))
    return matrix


@torch.no_grad()
def original_logits(split: HeadSplit) -> np.ndarray:
    """The unrepaired network's logits of the edit points (float64, flattened point by point)."""
    x = torch.from_numpy(split.layer_inputs) @ split.layer.weight.double().T + split.layer.bias.double()
    for _, module in split.downstream:
        if isinstance(module, nn.Linear):
            x = x @ module.weight.double().T + module.bias.double()
        elif isinstance(module, nn.ReLU):
            x = x.clamp(min=0)
    return x.numpy().ravel()


def build_repair_lp(
    split: HeadSplit, labels: np.ndarray, margin: float, param_bound: float, objective: str = "linf+l1_normalized",
) -> LinearProgram:
    """The repair LP of `split`'s layer for edit points with these labels (see the module doc)."""
    weight = split.layer.weight.detach().double().numpy()
    bias = split.layer.bias.detach().double().numpy()
    n = len(labels)
    num_params = weight.size + bias.size
    num_vars = num_params + 1
    expression, constant = layer_output_expression(split.layer_inputs, weight, bias, num_vars)
    width = weight.shape[0]
    blocks: list[tuple[sp.csr_matrix, np.ndarray, np.ndarray]] = []  # (rows, lower, upper)
    aux_lower, aux_upper = [], []
    patterns = iter(relu_patterns(split))
    for _, module in split.downstream:
        if isinstance(module, nn.ReLU):
            active = next(patterns).ravel() > 0
            first, count = num_vars, n * width
            num_vars += count
            expression = _pad_columns(expression, num_vars)
            blocks = [(_pad_columns(rows, num_vars), lo, up) for rows, lo, up in blocks]
            link = sp.hstack([expression[:, :first], -sp.identity(count, format="csr")], format="csr")
            blocks.append((link, -constant, -constant))  # expression + constant - aux = 0
            aux_lower.append(np.where(active, 0.0, -np.inf))
            aux_upper.append(np.where(active, np.inf, 0.0))
            picks = np.flatnonzero(active)
            expression = sp.csr_matrix((np.ones(len(picks)), (picks, first + picks)), shape=(count, num_vars))
            constant = np.zeros(count)
        elif isinstance(module, nn.Linear):
            w_next = module.weight.detach().double().numpy()
            b_next = module.bias.detach().double().numpy()
            per_point = sp.kron(sp.identity(n, format="csr"), sp.csr_matrix(w_next), format="csr")
            expression = (per_point @ expression).tocsr()
            constant = (constant.reshape(n, width) @ w_next.T + b_next).ravel()
            width = w_next.shape[0]
    num_classes = width
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise InputError(f"edit labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}.")
    others = np.array([[c for c in range(num_classes) if c != y] for y in labels]).reshape(-1)
    points = np.arange(n).repeat(num_classes - 1)
    rows = np.arange(n * (num_classes - 1))
    difference = sp.csr_matrix(
        (np.concatenate([np.ones(len(rows)), -np.ones(len(rows))]),
         (np.concatenate([rows, rows]), np.concatenate([points * num_classes + labels[points], points * num_classes + others]))),
        shape=(len(rows), n * num_classes),
    )
    margin_rows = (difference @ expression).tocsr()
    blocks.append((margin_rows, margin - difference @ constant, np.full(len(rows), np.inf)))
    outputs = (expression, constant - original_logits(split)) if objective == "linf+l1_normalized" else None
    return _with_norm_rows(blocks, num_params, num_vars, param_bound, aux_lower, aux_upper, objective, outputs)


def _with_norm_rows(
    blocks: list[tuple[sp.csr_matrix, np.ndarray, np.ndarray]], num_params: int, num_vars: int, param_bound: float,
    aux_lower: list[np.ndarray], aux_upper: list[np.ndarray], objective: str,
    outputs: tuple[sp.csr_matrix, np.ndarray] | None = None,
) -> LinearProgram:
    """Add -t <= delta_i <= t and the objective's columns after every other column: for linf+l1
    s_i >= |delta_i|; for linf+l1_normalized also u_j >= |d_j| and t >= u_j for the logit changes
    d = outputs[0] @ x + outputs[1]."""
    if objective not in OBJECTIVES:
        raise InputError(f"unknown repair.lp.objective '{objective}'; choose one of {', '.join(OBJECTIVES)}.")
    with_l1 = objective in ("linf+l1", "linf+l1_normalized")
    with_outputs = objective == "linf+l1_normalized"
    if with_outputs and outputs is None:
        raise ValueError("linf+l1_normalized needs the logit-change expression")
    num_outputs = outputs[0].shape[0] if with_outputs else 0
    total = num_vars + (num_params if with_l1 else 0) + num_outputs
    eye = sp.identity(num_params, format="csr")
    between = sp.csr_matrix((num_params, num_vars - num_params - 1))
    tail = [sp.csr_matrix((num_params, total - num_vars))] if total > num_vars else []
    t_column = sp.csr_matrix(np.ones((num_params, 1)))
    for sign in (1.0, -1.0):  # sign * delta_i - t <= 0
        rows = sp.hstack([sign * eye, -t_column, between, *tail], format="csr")
        blocks.append((rows, np.full(num_params, -np.inf), np.zeros(num_params)))
    if with_l1:  # sign * delta_i - s_i <= 0
        rest = [sp.csr_matrix((num_params, num_outputs))] if num_outputs else []
        for sign in (1.0, -1.0):
            rows = sp.hstack([sign * eye, sp.csr_matrix((num_params, 1)), between, -eye, *rest], format="csr")
            blocks.append((rows, np.full(num_params, -np.inf), np.zeros(num_params)))
    if with_outputs:  # sign * d_j - u_j <= 0 and u_j - t <= 0
        expression, offset = outputs
        left = _pad_columns(expression, num_vars + num_params)
        u = sp.identity(num_outputs, format="csr")
        for sign in (1.0, -1.0):
            blocks.append((sp.hstack([sign * left, -u], format="csr"), np.full(num_outputs, -np.inf), -sign * offset))
        t_only = sp.csr_matrix((-np.ones(num_outputs), (np.arange(num_outputs), np.full(num_outputs, num_params))),
                               shape=(num_outputs, num_vars + num_params))
        blocks.append((sp.hstack([t_only, u], format="csr"), np.full(num_outputs, -np.inf), np.zeros(num_outputs)))
    cost = np.zeros(total)
    cost[num_params] = 1.0
    col_lower = [np.full(num_params, -param_bound), [0.0], *aux_lower]
    # t bounds the parameters only under linf and linf+l1; under linf+l1_normalized it also
    # bounds the logit changes, which param_bound does not limit (the columns still do)
    col_upper = [np.full(num_params, param_bound), [np.inf if with_outputs else param_bound], *aux_upper]
    if with_l1:  # the L1 term is the mean absolute change (PRDNN's and sytorch's normalisation)
        cost[num_vars:] = 1.0 / (num_params + num_outputs)
        col_lower.append(np.zeros(num_params))
        col_upper.append(np.full(num_params, param_bound))
    if with_outputs:
        col_lower.append(np.zeros(num_outputs))
        col_upper.append(np.full(num_outputs, np.inf))
    return LinearProgram(
        cost=cost,
        matrix=sp.vstack([_pad_columns(b[0], total) for b in blocks], format="csr"),
        row_lower=np.concatenate([b[1] for b in blocks]),
        row_upper=np.concatenate([b[2] for b in blocks]),
        col_lower=np.concatenate(col_lower),
        col_upper=np.concatenate(col_upper),
        num_params=num_params,
    )
