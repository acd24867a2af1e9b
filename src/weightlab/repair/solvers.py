"""Solving a repair LP: gurobipy (barrier) where it can take the problem, HiGHS with its
interior-point method otherwise.

pip's gurobipy runs a size-limited licence (2000 variables, 2000 linear constraints); HiGHS's
default simplex is far slower than its IPM on these LPs. Under `auto`, the choice and any
fallback are recorded with the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from weightlab.errors import InputError

if TYPE_CHECKING:
    from weightlab.repair.lp import LinearProgram

SOLVERS = ("auto", "gurobi", "highs")
SOLVER_PACKAGES = ("highspy", "gurobipy")  # recorded in the provenance of every repair result
GUROBI_SIZE_LIMIT = 2000  # variables and linear constraints of pip's size-limited licence


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
        seconds = time.perf_counter() - started
        return SolveResult("gurobi", "Error", False, None, None, None, None, seconds, "", message=f"gurobipy refused the model: {err}")


def solve(lp: LinearProgram, solver: str = "auto", threads: int = 1, time_limit: float | None = None) -> SolveResult:
    """Solve with the chosen solver; under auto, a Gurobi refusal falls back to HiGHS (recorded)."""
    name, choice = choose_solver(lp, solver)
    result = solve_gurobi(lp, threads, time_limit) if name == "gurobi" else solve_highs(lp, threads, time_limit)
    if solver == "auto" and result.status == "Error":
        choice = f"{choice}; gurobi failed ({result.message}), fell back to highs"
        result = solve_highs(lp, threads, time_limit)
    result.choice = choice
    return result
