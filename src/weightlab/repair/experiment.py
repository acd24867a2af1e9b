"""The repair study's experiments: one repair run per edit set, and the grid of runs
(experiment_data.csv with the original study's columns, then ours). The base model is in
`weightlab.repair.base`, which imports no LP code, so an edit of the repair does not retrain it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlab.io import atomic_path, read_json
from weightlab.repair.base import accuracy_on
from weightlab.repair.core import EditCheck, RepairResult, RepairSettings, full_net_margins, repair_model
from weightlab.repair.editsets import SIZING_STRATEGY, EditSet, grid_order
from weightlab.vision.training import evaluate

RUN_RECORD = "result.json"  # the record of one run, in the run's folder
REPAIRED_MODEL = "repaired_model.pt"  # the repaired checkpoint, beside it (successful runs only)

# The original study's columns, in its order, then ours.
ORIGINAL_COLUMNS = (
    "experiment_id", "timestamp", "repair_set_type", "repair_set_focus", "requested_repair_set_size",
    "edit_set_sizing_strategy", "actual_repair_set_size", "edit_set_path", "target_class", "param_bound",
    "margin", "baseline_model_path", "baseline_accuracy_test_set", "baseline_accuracy_edit_set",
    "repair_runtime_seconds", "gurobi_barrier_iterations", "repair_successful", "repaired_model_path",
    "repaired_accuracy_test_set", "repaired_accuracy_edit_set", "repaired_accuracy_drawdown_set", "error_message",
)
COLUMNS = ORIGINAL_COLUMNS + ("solver", "solver_iterations")


# ----------------------------------------------------------------------------- one run


def run_paths(edit_set: str, baseline: str, run_dir: str | Path) -> dict[str, str]:
    """The paths a run's record names: its edit set, the base model and the repaired model."""
    return {"edit_set": str(edit_set), "baseline": str(baseline), "repaired": str(Path(run_dir) / REPAIRED_MODEL)}


def experiment_record(
    edit_set: EditSet, test_labels: np.ndarray, baseline_predictions: np.ndarray, settings: RepairSettings,
    result: RepairResult | None, repaired_predictions: np.ndarray | None, check: EditCheck | None,
    runtime: float, paths: dict[str, str], reason: str = "", full_net: dict[str, float] | None = None,
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
        "edit_set_sizing_strategy": SIZING_STRATEGY,
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
        "gurobi_licence_limit": solve_result.details.get("licence_limit") if solve_result else None,
        "solved_in_presolve": solve_result.details.get("solved_in_presolve") if solve_result else None,
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
        # the re-check of a solved LP by a float32 forward pass of the whole repaired network
        "lp_solved": bool(result is not None and result.successful),
        "edit_min_margin_full_net": (full_net or {}).get("min_margin"),
        "edit_accuracy_full_net": (full_net or {}).get("accuracy"),
    }
    return record


def run_experiment(
    model: nn.Module, test_images: np.ndarray, test_labels: np.ndarray, baseline_predictions: np.ndarray,
    edit_set: EditSet, settings: RepairSettings, paths: dict[str, str], device: torch.device | str = "cpu",
) -> tuple[dict[str, Any], nn.Module | None]:
    """Repair on one edit set and evaluate (test, edit, drawdown) with a plain float32 forward
    pass. Never raises for an unsatisfiable or empty edit set: the record says why."""
    edit = np.asarray(edit_set.indices, dtype=np.int64)
    if len(edit) == 0:
        reason = f"edit set is empty: the test set has no image of type {edit_set.set_type}" + (
            f" in class {edit_set.target_class}" if edit_set.target_class is not None else "")
        return experiment_record(edit_set, test_labels, baseline_predictions, settings, None, None, None, 0.0, paths, reason), None
    started = time.perf_counter()
    result, repaired, check = repair_model(model, test_images[edit], test_labels[edit], settings)
    runtime = time.perf_counter() - started
    predictions, reason, full_net = None, "", None
    if repaired is not None:
        device = torch.device(device)
        predictions = evaluate(repaired.to(device), test_images, test_labels, device).predictions
        margins = full_net_margins(repaired, test_images[edit], test_labels[edit], device)
        full_net = {"min_margin": float(margins.min()), "accuracy": float((margins > 0).mean())}
        wrong = int((predictions[edit] != test_labels[edit]).sum())
        if wrong:
            reason = (f"the LP was solved ({result.solve.status}) but a float32 forward pass still misclassifies "
                      f"{wrong} of {len(edit)} edit points (numerical tolerance)")
            repaired = None
    record = experiment_record(edit_set, test_labels, baseline_predictions, settings, result, predictions, check, runtime, paths, reason,
                               full_net)
    return record, repaired


# ----------------------------------------------------------------------------- the grid


def run_records(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every run's record (its RUN_RECORD without the provenance block), in the given order."""
    return [{k: v for k, v in read_json(Path(run) / RUN_RECORD).items() if k != "provenance"} for run in run_dirs]


def grid_summary(records: Sequence[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """summary.json without its provenance: the columns, counts, every record and the base evaluation."""
    repaired = sum(bool(r["repair_successful"]) for r in records)
    return {"columns": list(COLUMNS), "runs": len(records), "repaired": repaired, "records": list(records), "base": base}


def grid_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grid's rows: exactly COLUMNS, in order, sorted by type, class and size."""
    ordered = sorted(records, key=grid_order)
    return [{column: record.get(column) for column in COLUMNS} for record in ordered]


def write_grid_csv(path: Any, records: Sequence[dict[str, Any]]) -> None:
    import pandas as pd

    table = pd.DataFrame(grid_rows(records), columns=list(COLUMNS))
    table["target_class"] = table["target_class"].astype("Int64")
    for column in ("gurobi_barrier_iterations", "solver_iterations"):
        table[column] = table[column].astype("Int64")
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


# ----------------------------------------------------------------------------- evaluation


def drawdown_indices(num_test: int, edit_indices: np.ndarray) -> np.ndarray:
    """The test set minus the edit images."""
    keep = np.ones(num_test, dtype=bool)
    keep[edit_indices] = False
    return np.flatnonzero(keep)
