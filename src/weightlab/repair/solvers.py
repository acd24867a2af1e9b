"""Solving a repair LP: gurobipy (barrier) where its licence takes the problem, HiGHS with its
interior-point method otherwise.

`auto` decides by trying, not by a fixed size: it hands the LP to gurobipy and falls back to
HiGHS when gurobipy refuses it, recording the refusal (pip's gurobipy runs a size-limited
licence, 2000 variables and 2000 linear constraints: a larger model raises error 10010; a full
licence takes it). HiGHS's default simplex is far slower than its IPM on these LPs.

Gurobi's barrier iteration count is 0 when presolve solves the LP outright, which it does for
every last-layer LP of the default grid (all rows and columns removed, 0 simplex iterations,
about 2 ms): the record then says `solved_in_presolve`.
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
    """(solver to run first, why). `auto` tries gurobipy whenever it is installed; `solve` falls
    back to HiGHS if its licence refuses the model."""
    if solver not in SOLVERS:
        raise InputError(f"unknown repair.lp.solver '{solver}'; choose one of {', '.join(SOLVERS)}.")
    size = f"{lp.num_vars} variables, {gurobi_rows(lp)} constraints"
    if solver != "auto":
        return solver, f"requested ({size})"
    if not gurobi_available():
        return "highs", f"auto: gurobipy not installed ({size})"
    return "gurobi", f"auto: gurobipy tried first ({size})"


LICENCE_LIMITS = {10010: f"size-limited licence ({GUROBI_SIZE_LIMIT} variables, {GUROBI_SIZE_LIMIT} linear constraints)"}


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
                barrier, simplex = int(model.BarIterCount), int(model.IterCount)
                return SolveResult(
                    "gurobi", status, optimal, np.asarray(x.X, dtype=np.float64) if optimal else None,
                    float(model.ObjVal) if optimal else None, barrier, barrier, time.perf_counter() - started, "",
                    details={"simplex_iterations": simplex, "gurobi_runtime": float(model.Runtime),
                             "solved_in_presolve": optimal and barrier == 0 and simplex == 0},
                )
    except gp.GurobiError as err:
        seconds = time.perf_counter() - started
        code = getattr(err, "errno", None)
        limit = LICENCE_LIMITS.get(code, "")
        return SolveResult("gurobi", "Error", False, None, None, None, None, seconds, "",
                           message=f"gurobipy refused the model (error {code}{': ' + limit if limit else ''}): {err}",
                           details={"gurobi_error_code": code, "licence_limit": limit or None})


def solve(lp: LinearProgram, solver: str = "auto", threads: int = 1, time_limit: float | None = None) -> SolveResult:
    """Solve with the chosen solver; under auto, a Gurobi refusal falls back to HiGHS (recorded)."""
    name, choice = choose_solver(lp, solver)
    result = solve_gurobi(lp, threads, time_limit) if name == "gurobi" else solve_highs(lp, threads, time_limit)
    if solver == "auto" and name == "gurobi" and result.status == "Error":
        refusal = result
        choice = f"{choice}; {refusal.message}; fell back to highs"
        result = solve_highs(lp, threads, time_limit)
        result.details = {**result.details, "gurobi_refusal": refusal.message, "licence_limit": refusal.details.get("licence_limit")}
    result.choice = choice
    return result
