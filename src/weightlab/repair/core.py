"""Provable repair of one linear layer as a linear program (PRDNN / APRNN style).

Given edit points (their inputs to the network's `classifier` and their labels), find changes
dW, db of one Linear layer of the classifier such that every point gets
logit[y] >= logit[c] + margin for all c != y, every change is within +-param_bound, and the
largest change t = max |delta| is as small as possible:

    minimise t  s.t.  margin rows,  -t <= delta_i <= t,  -B <= delta_i <= B.

The logits are affine in the layer's parameters when the layer is the last one. For an earlier
layer, each point's ReLU pattern downstream of the layer is fixed to the one the original
network has (APRNN's linearisation): one auxiliary variable per pre-activation, tied to the
layer's output by an equality row, with a sign bound that keeps the assumed pattern, so the LP
is exact for the repaired network. The matrix is built directly with scipy.sparse.

Solvers: gurobipy (barrier) where it can take the problem, HiGHS with its interior-point
method otherwise. pip's gurobipy runs a size-limited licence (2000 variables, 2000 linear
constraints); HiGHS's default simplex is far slower than its IPM on these LPs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from weightlab.data import to_float_batch
from weightlab.errors import InputError

SOLVERS = ("auto", "gurobi", "highs")
OBJECTIVES = ("linf", "linf+l1")  # linf+l1: t + mean |delta|, the normalised sum PRDNN and APRNN minimise
GUROBI_SIZE_LIMIT = 2000  # variables and linear constraints of pip's size-limited licence
PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)  # identity maps in eval mode on flat inputs
PATTERN_TOLERANCE = 1e-5  # |pre-activation| below this counts as on the ReLU's kink when checking


# ----------------------------------------------------------------------------- the LP


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
        raise InputError(f"repair.layer '{layer}' is not a linear layer of the classifier; choose one of {names} or last.")
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


def build_repair_lp(split: HeadSplit, labels: np.ndarray, margin: float, param_bound: float, objective: str = "linf") -> LinearProgram:
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
    return _with_norm_rows(blocks, num_params, num_vars, param_bound, aux_lower, aux_upper, objective)


def _with_norm_rows(
    blocks: list[tuple[sp.csr_matrix, np.ndarray, np.ndarray]], num_params: int, num_vars: int, param_bound: float,
    aux_lower: list[np.ndarray], aux_upper: list[np.ndarray], objective: str,
) -> LinearProgram:
    """Add -t <= delta_i <= t (and, for linf+l1, s_i >= |delta_i| after every other column)."""
    if objective not in OBJECTIVES:
        raise InputError(f"unknown repair.objective '{objective}'; choose one of {', '.join(OBJECTIVES)}.")
    with_l1 = objective == "linf+l1"
    total = num_vars + (num_params if with_l1 else 0)
    eye = sp.identity(num_params, format="csr")
    between = sp.csr_matrix((num_params, num_vars - num_params - 1))
    tail = [sp.csr_matrix((num_params, num_params))] if with_l1 else []
    t_column = sp.csr_matrix(np.ones((num_params, 1)))
    for sign in (1.0, -1.0):  # sign * delta_i - t <= 0
        blocks.append((sp.hstack([sign * eye, -t_column, between, *tail], format="csr"), np.full(num_params, -np.inf), np.zeros(num_params)))
    if with_l1:  # sign * delta_i - s_i <= 0
        for sign in (1.0, -1.0):
            rows = sp.hstack([sign * eye, sp.csr_matrix((num_params, 1)), between, -eye], format="csr")
            blocks.append((rows, np.full(num_params, -np.inf), np.zeros(num_params)))
    cost = np.zeros(total)
    cost[num_params] = 1.0
    col_lower = [np.full(num_params, -param_bound), [0.0], *aux_lower]
    col_upper = [np.full(num_params, param_bound), [param_bound], *aux_upper]
    if with_l1:  # PRDNN's normalisation: the L1 term is the mean absolute change
        cost[num_vars:] = 1.0 / num_params
        col_lower.append(np.zeros(num_params))
        col_upper.append(np.full(num_params, param_bound))
    return LinearProgram(
        cost=cost,
        matrix=sp.vstack([_pad_columns(b[0], total) for b in blocks], format="csr"),
        row_lower=np.concatenate([b[1] for b in blocks]),
        row_upper=np.concatenate([b[2] for b in blocks]),
        col_lower=np.concatenate(col_lower),
        col_upper=np.concatenate(col_upper),
        num_params=num_params,
    )


# ----------------------------------------------------------------------------- solvers


@dataclass
class SolveResult:
    solver: str  # the one that ran: gurobi or highs
    status: str
    optimal: bool
    x: np.ndarray | None
    objective: float | None
    iterations: int | None  # barrier (Gurobi) or interior-point (HiGHS) iterations
    barrier_iterations: int | None  # Gurobi only
    seconds: float
    choice: str  # why this solver ran
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def gurobi_rows(lp: LinearProgram) -> int:
    """Linear constraints as Gurobi sees them: a ranged row counts twice."""
    finite_lower = np.isfinite(lp.row_lower)
    finite_upper = np.isfinite(lp.row_upper)
    equal = finite_lower & finite_upper & (lp.row_lower == lp.row_upper)
    return int(equal.sum() + (finite_lower & ~equal).sum() + (finite_upper & ~equal).sum())


def fits_size_limited_licence(lp: LinearProgram) -> bool:
    return lp.num_vars <= GUROBI_SIZE_LIMIT and gurobi_rows(lp) <= GUROBI_SIZE_LIMIT


def gurobi_available() -> bool:
    try:
        import gurobipy  # noqa: F401
    except ImportError:
        return False
    return True


def choose_solver(lp: LinearProgram, solver: str) -> tuple[str, str]:
    """(solver to run, why): auto takes Gurobi when the problem fits its size-limited licence."""
    if solver not in SOLVERS:
        raise InputError(f"unknown repair.solver '{solver}'; choose one of {', '.join(SOLVERS)}.")
    size = f"{lp.num_vars} variables, {gurobi_rows(lp)} constraints"
    if solver != "auto":
        return solver, f"requested ({size})"
    if not gurobi_available():
        return "highs", f"auto: gurobipy not installed ({size})"
    if fits_size_limited_licence(lp):
        return "gurobi", f"auto: fits gurobipy's size-limited licence ({size} <= {GUROBI_SIZE_LIMIT})"
    return "highs", f"auto: over gurobipy's size-limited licence ({size} > {GUROBI_SIZE_LIMIT})"


def solve_highs(lp: LinearProgram, threads: int = 1, time_limit: float | None = None) -> SolveResult:
    """HiGHS with its interior-point method (then crossover to a vertex)."""
    import highspy

    highs = highspy.Highs()
    for option, value in (("output_flag", False), ("solver", "ipm"), ("threads", max(1, threads)), ("random_seed", 0)):
        highs.setOptionValue(option, value)
    if time_limit:
        highs.setOptionValue("time_limit", float(time_limit))
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = lp.num_vars, lp.num_constraints
    model.col_cost_, model.col_lower_, model.col_upper_ = lp.cost, lp.col_lower, lp.col_upper
    model.row_lower_, model.row_upper_ = lp.row_lower, lp.row_upper
    csc = lp.matrix.tocsc()
    csc.sort_indices()
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_, model.a_matrix_.index_, model.a_matrix_.value_ = csc.indptr, csc.indices, csc.data
    started = time.perf_counter()
    highs.passModel(model)
    highs.run()
    seconds = time.perf_counter() - started
    status = highs.modelStatusToString(highs.getModelStatus())
    info = highs.getInfo()
    optimal = status == "Optimal"
    x = np.asarray(highs.getSolution().col_value, dtype=np.float64) if optimal else None
    return SolveResult(
        "highs", status, optimal, x, float(info.objective_function_value) if optimal else None,
        int(info.ipm_iteration_count), None, seconds, "",
        details={"crossover_iterations": int(info.crossover_iteration_count), "simplex_iterations": int(info.simplex_iteration_count)},
    )


GUROBI_STATUS = {
    1: "Loaded", 2: "Optimal", 3: "Infeasible", 4: "Infeasible or unbounded", 5: "Unbounded",
    6: "Cutoff", 7: "Iteration limit", 9: "Time limit", 11: "Interrupted", 12: "Numeric trouble", 13: "Suboptimal",
}


def solve_gurobi(lp: LinearProgram, threads: int = 1, time_limit: float | None = None) -> SolveResult:
    """gurobipy's barrier method (then crossover). A licence refusal becomes a failed result."""
    import gurobipy as gp

    started = time.perf_counter()
    try:
        with gp.Env(empty=True) as env:
            env.setParam("OutputFlag", 0)
            env.start()
            with gp.Model(env=env) as model:
                x = model.addMVar(lp.num_vars, lb=lp.col_lower, ub=lp.col_upper, obj=lp.cost)
                equal = lp.row_lower == lp.row_upper
                for mask, sense, rhs in (
                    (equal, "=", lp.row_lower),
                    (~equal & np.isfinite(lp.row_lower), ">", lp.row_lower),
                    (~equal & np.isfinite(lp.row_upper), "<", lp.row_upper),
                ):
                    if mask.any():
                        model.addMConstr(lp.matrix[np.flatnonzero(mask)], x, sense, rhs[mask])
                model.Params.Method = 2
                model.Params.Threads = max(1, threads)
                model.Params.Seed = 0
                if time_limit:
                    model.Params.TimeLimit = float(time_limit)
                model.optimize()
                status = GUROBI_STATUS.get(model.Status, f"status {model.Status}")
                optimal = model.Status == gp.GRB.OPTIMAL
                barrier = int(model.BarIterCount)
                return SolveResult(
                    "gurobi", status, optimal, np.asarray(x.X, dtype=np.float64) if optimal else None,
                    float(model.ObjVal) if optimal else None, barrier, barrier, time.perf_counter() - started, "",
                    details={"simplex_iterations": int(model.IterCount), "gurobi_runtime": float(model.Runtime)},
                )
    except gp.GurobiError as err:
        return SolveResult("gurobi", "Error", False, None, None, None, None, time.perf_counter() - started, "", message=f"gurobipy refused the model: {err}")


def solve(lp: LinearProgram, solver: str = "auto", threads: int = 1, time_limit: float | None = None) -> SolveResult:
    """Solve with the chosen solver; under auto, a Gurobi refusal falls back to HiGHS (recorded)."""
    name, choice = choose_solver(lp, solver)
    result = solve_gurobi(lp, threads, time_limit) if name == "gurobi" else solve_highs(lp, threads, time_limit)
    if solver == "auto" and result.status == "Error":
        choice = f"{choice}; gurobi failed ({result.message}), fell back to highs"
        result = solve_highs(lp, threads, time_limit)
    result.choice = choice
    return result


# ----------------------------------------------------------------------------- repair


@dataclass
class RepairResult:
    successful: bool
    reason: str  # empty when successful
    layer: str
    solve: SolveResult
    num_vars: int
    num_constraints: int
    delta_weight: np.ndarray | None = None
    delta_bias: np.ndarray | None = None
    build_seconds: float = 0.0

    @property
    def linf(self) -> float | None:
        if self.delta_weight is None:
            return None
        return float(max(np.abs(self.delta_weight).max(initial=0.0), np.abs(self.delta_bias).max(initial=0.0)))

    @property
    def l1(self) -> float | None:
        if self.delta_weight is None:
            return None
        return float(np.abs(self.delta_weight).sum() + np.abs(self.delta_bias).sum())


def failure_reason(result: SolveResult, n: int, layer: str, margin: float, param_bound: float) -> str:
    if result.status in ("Infeasible", "Infeasible or unbounded"):
        return (f"LP infeasible ({result.solver}: {result.status}): no change of at most {param_bound} per parameter "
                f"of layer {layer} gives all {n} edit points a margin of {margin}")
    if result.message:
        return result.message
    return f"{result.solver} stopped with status '{result.status}' after {result.seconds:.1f} s"


def repair_head(
    head: nn.Sequential, layer: str, head_inputs: torch.Tensor, labels: np.ndarray, margin: float,
    param_bound: float, solver: str = "auto", threads: int = 1, time_limit: float | None = None,
    objective: str = "linf",
) -> RepairResult:
    """Solve the repair LP for one layer of `head`; an infeasible or failed solve is a result."""
    started = time.perf_counter()
    split = split_head(head, layer, head_inputs)
    lp = build_repair_lp(split, np.asarray(labels, dtype=np.int64), margin, param_bound, objective)
    build_seconds = time.perf_counter() - started
    result = solve(lp, solver, threads, time_limit)
    repair = RepairResult(False, "", split.layer_name, result, lp.num_vars, lp.num_constraints, build_seconds=build_seconds)
    if not result.optimal:
        repair.reason = failure_reason(result, len(labels), split.layer_name, margin, param_bound)
        return repair
    weight_shape = tuple(split.layer.weight.shape)
    num_weights = int(np.prod(weight_shape))
    repair.delta_weight = result.x[:num_weights].reshape(weight_shape)
    repair.delta_bias = result.x[num_weights:lp.num_params]
    repair.successful = True
    return repair


def apply_repair(model: nn.Module, repair: RepairResult) -> nn.Module:
    """A copy of `model` with the repaired layer's parameters changed (float32)."""
    repaired = copy.deepcopy(model)
    layer = getattr(repaired.classifier, repair.layer)
    with torch.no_grad():
        layer.weight += torch.from_numpy(repair.delta_weight).to(layer.weight)
        layer.bias += torch.from_numpy(repair.delta_bias).to(layer.bias)
    return repaired


@torch.no_grad()
def head_inputs(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 500) -> torch.Tensor:
    """What enters `model.classifier` for each image (float32, eval mode, on the CPU)."""
    captured: list[torch.Tensor] = []
    hook = model.classifier.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().cpu()))
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(to_float_batch(images[start:start + batch_size], device))
    finally:
        hook.remove()
    return torch.cat(captured) if captured else torch.zeros(0)


@dataclass(frozen=True)
class EditCheck:
    accuracy: float
    min_margin: float  # smallest logit[y] - max_{c != y} logit[c] over the edit points
    pattern_flips: int  # downstream ReLU units whose side changed (|z| > tolerance in both)


@torch.no_grad()
def check_edit_points(original_head: nn.Sequential, repaired_head: nn.Sequential, layer: str, inputs: torch.Tensor, labels: np.ndarray) -> EditCheck:
    """Plain float32 forward pass: accuracy, margin and ReLU-pattern changes on the edit points."""
    inputs = inputs.float()
    logits = repaired_head.eval()(inputs).double().numpy()
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return EditCheck(float("nan"), float("nan"), 0)
    true = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    before = relu_patterns(split_head(original_head, layer, inputs))
    after = relu_patterns(split_head(repaired_head, layer, inputs))
    flips = sum(
        int(((np.sign(a) != np.sign(b)) & (np.abs(a) > PATTERN_TOLERANCE) & (np.abs(b) > PATTERN_TOLERANCE)).sum())
        for a, b in zip(before, after)
    )
    return EditCheck(float((logits.argmax(1) == labels).mean()), float((true - others.max(1)).min()), flips)


def accuracy_on(predictions: np.ndarray, labels: np.ndarray, indices: Sequence[int] | np.ndarray | None = None) -> float:
    """Accuracy over `indices` (all when None); NaN for an empty selection."""
    if indices is not None:
        predictions, labels = predictions[indices], labels[indices]
    return float((predictions == labels).mean()) if len(labels) else float("nan")


def drawdown_indices(num_test: int, edit_indices: np.ndarray) -> np.ndarray:
    """The test set minus the edit images."""
    keep = np.ones(num_test, dtype=bool)
    keep[edit_indices] = False
    return np.flatnonzero(keep)


# ----------------------------------------------------------------------------- experiments

# The original study's columns, in its order, then ours.
ORIGINAL_COLUMNS = (
    "experiment_id", "timestamp", "repair_set_type", "repair_set_focus", "requested_repair_set_size",
    "edit_set_sizing_strategy", "actual_repair_set_size", "edit_set_path", "target_class", "param_bound",
    "margin", "baseline_model_path", "baseline_accuracy_test_set", "baseline_accuracy_edit_set",
    "repair_runtime_seconds", "gurobi_barrier_iterations", "repair_successful", "repaired_model_path",
    "repaired_accuracy_test_set", "repaired_accuracy_edit_set", "repaired_accuracy_drawdown_set", "error_message",
)
COLUMNS = ORIGINAL_COLUMNS + ("solver", "solver_iterations")


@dataclass(frozen=True)
class RepairSettings:
    layer: str = "last"
    margin: float = 2.0
    param_bound: float = 5.0
    solver: str = "auto"
    objective: str = "linf"
    time_limit: float | None = None
    threads: int = 1


def repair_model(model: nn.Module, images: np.ndarray, labels: np.ndarray, settings: RepairSettings) -> tuple[RepairResult, nn.Module | None, EditCheck | None]:
    """Repair a CPU copy of `model` on these images: the result, the repaired copy (None when the
    LP failed) and the float32 check of the edit points on it."""
    model = copy.deepcopy(model).cpu().eval()
    inputs = head_inputs(model, images)
    result = repair_head(
        model.classifier, settings.layer, inputs, labels, settings.margin, settings.param_bound,
        settings.solver, settings.threads, settings.time_limit, settings.objective,
    )
    if not result.successful:
        return result, None, None
    repaired = apply_repair(model, result)
    return result, repaired, check_edit_points(model.classifier, repaired.classifier, result.layer, inputs, labels)


def experiment_record(
    edit_set: Any, test_labels: np.ndarray, baseline_predictions: np.ndarray, settings: RepairSettings,
    result: RepairResult | None, repaired_predictions: np.ndarray | None, check: EditCheck | None,
    runtime: float, paths: dict[str, str], reason: str = "",
) -> dict[str, Any]:
    """One row of the grid (COLUMNS) plus details: norms of the change, solver status, sizes."""
    edit = np.asarray(edit_set.indices, dtype=np.int64)
    drawdown = drawdown_indices(len(test_labels), edit)
    successful = bool(result is not None and result.successful and repaired_predictions is not None and not reason)
    solve_result = result.solve if result is not None else None
    record: dict[str, Any] = {
        "experiment_id": edit_set.name,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repair_set_type": edit_set.set_type,
        "repair_set_focus": edit_set.focus,
        "requested_repair_set_size": edit_set.requested_size,
        "edit_set_sizing_strategy": "flexible",
        "actual_repair_set_size": edit_set.actual_size,
        "edit_set_path": paths.get("edit_set", ""),
        "target_class": edit_set.target_class,
        "param_bound": settings.param_bound,
        "margin": settings.margin,
        "baseline_model_path": paths.get("baseline", ""),
        "baseline_accuracy_test_set": accuracy_on(baseline_predictions, test_labels),
        "baseline_accuracy_edit_set": accuracy_on(baseline_predictions, test_labels, edit),
        "repair_runtime_seconds": runtime,
        "gurobi_barrier_iterations": solve_result.barrier_iterations if solve_result else None,
        "repair_successful": successful,
        "repaired_model_path": paths.get("repaired", "") if successful else "",
        "repaired_accuracy_test_set": accuracy_on(repaired_predictions, test_labels) if successful else None,
        "repaired_accuracy_edit_set": accuracy_on(repaired_predictions, test_labels, edit) if successful else None,
        "repaired_accuracy_drawdown_set": accuracy_on(repaired_predictions, test_labels, drawdown) if successful else None,
        "error_message": reason or (result.reason if result is not None else ""),
        "solver": solve_result.solver if solve_result else "",
        "solver_iterations": solve_result.iterations if solve_result else None,
        # details beyond the grid's columns
        "layer": result.layer if result is not None else settings.layer,
        "lp_objective_kind": settings.objective,
        "solver_status": solve_result.status if solve_result else "",
        "solver_choice": solve_result.choice if solve_result else "",
        "solver_seconds": solve_result.seconds if solve_result else None,
        "lp_build_seconds": result.build_seconds if result is not None else None,
        "lp_variables": result.num_vars if result is not None else None,
        "lp_constraints": result.num_constraints if result is not None else None,
        "objective": solve_result.objective if solve_result else None,
        "delta_linf": result.linf if result is not None else None,
        "delta_l1": result.l1 if result is not None else None,
        "edit_min_margin": check.min_margin if check else None,
        "edit_pattern_flips": check.pattern_flips if check else None,
        "available_candidates": edit_set.available,
        "baseline_accuracy_drawdown_set": accuracy_on(baseline_predictions, test_labels, drawdown),
        "repaired_accuracy_edit_set_lp_head": check.accuracy if check else None,
    }
    return record


def run_experiment(
    model: nn.Module, test_images: np.ndarray, test_labels: np.ndarray, baseline_predictions: np.ndarray,
    edit_set: Any, settings: RepairSettings, paths: dict[str, str], device: torch.device | str = "cpu",
) -> tuple[dict[str, Any], nn.Module | None]:
    """Repair on one edit set and evaluate (test, edit, drawdown) with a plain float32 forward
    pass. Never raises for an unsatisfiable or empty edit set: the record says why."""
    from weightlab.training import evaluate

    edit = np.asarray(edit_set.indices, dtype=np.int64)
    if len(edit) == 0:
        reason = f"edit set is empty: the test set has no image of type {edit_set.set_type}" + (
            f" in class {edit_set.target_class}" if edit_set.target_class is not None else "")
        return experiment_record(edit_set, test_labels, baseline_predictions, settings, None, None, None, 0.0, paths, reason), None
    started = time.perf_counter()
    result, repaired, check = repair_model(model, test_images[edit], test_labels[edit], settings)
    runtime = time.perf_counter() - started
    predictions, reason = None, ""
    if repaired is not None:
        device = torch.device(device)
        predictions = evaluate(repaired.to(device), test_images, test_labels, device).predictions
        wrong = int((predictions[edit] != test_labels[edit]).sum())
        if wrong:
            reason = (f"the LP was solved ({result.solve.status}) but a float32 forward pass still misclassifies "
                      f"{wrong} of {len(edit)} edit points (numerical tolerance)")
            repaired = None
    record = experiment_record(edit_set, test_labels, baseline_predictions, settings, result, predictions, check, runtime, paths, reason)
    return record, repaired


def grid_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grid's rows: exactly COLUMNS, in order, sorted by type, class and size."""
    ordered = sorted(records, key=lambda r: (r["repair_set_type"], -1 if r["target_class"] is None else r["target_class"], r["requested_repair_set_size"]))
    return [{column: record.get(column) for column in COLUMNS} for record in ordered]


def write_grid_csv(path: Any, records: Sequence[dict[str, Any]]) -> None:
    import pandas as pd

    from weightlab.io import atomic_path

    table = pd.DataFrame(grid_rows(records), columns=list(COLUMNS))
    table["target_class"] = table["target_class"].astype("Int64")
    for column in ("gurobi_barrier_iterations", "solver_iterations"):
        table[column] = table[column].astype("Int64")
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def base_evaluation(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Test accuracy, per-class accuracy, confusion matrix and the size of every edit-set pool."""
    counts = confusion_matrix(labels, predictions, len(classes))
    per_class = counts.diagonal() / np.maximum(counts.sum(1), 1)
    wrong = counts.sum(1) - counts.diagonal()
    return {
        "test_accuracy": accuracy_on(predictions, labels),
        "num_test": int(len(labels)),
        "classes": list(classes),
        "per_class_accuracy": {name: float(a) for name, a in zip(classes, per_class)},
        "confusion_matrix": counts.tolist(),
        "misclassified_per_class": {name: int(w) for name, w in zip(classes, wrong)},
        "misclassified_total": int(wrong.sum()),
    }
