"""The repair study's key tables: the criteria (weightlab.verdicts), the grid summarised per
edit-set type and size, and every run of the experiment grid. Torch-free: reads summary.json's records."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from weightlab.repair.editsets import grid_order
from weightlab.tables import Table, criteria_table, frame, study_verdict_note
from weightlab.verdicts import criteria_of

RUN_COLUMNS = {
    "experiment_id": "run", "actual_repair_set_size": "edit points", "solver": "solver", "solver_status": "status",
    "repair_successful": "repaired", "repair_runtime_seconds": "runtime (s)",
    "baseline_accuracy_edit_set": "edit acc. before", "repaired_accuracy_edit_set": "edit acc. after",
    "baseline_accuracy_test_set": "test acc. before", "repaired_accuracy_test_set": "test acc. after",
    "baseline_accuracy_drawdown_set": "drawdown acc. before", "repaired_accuracy_drawdown_set": "drawdown acc. after",
    "delta_linf": "max |Δw|",
}


def grid_by_type(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per (edit-set type, requested size): runs, repaired runs, and the mean accuracy changes
    (after − before) on the edit set, the test set and the drawdown set (test minus edit points),
    over the runs that were repaired."""
    grid = pd.DataFrame(list(records))
    grid["repaired"] = grid["repair_successful"].astype(bool)
    for name in ("edit_set", "test_set", "drawdown_set"):
        grid[f"{name}_change"] = grid[f"repaired_accuracy_{name}"].astype(float) - grid[f"baseline_accuracy_{name}"].astype(float)
        grid.loc[~grid["repaired"], f"{name}_change"] = float("nan")
    grouped = grid.groupby(["repair_set_type", "requested_repair_set_size"], sort=True)
    summary = grouped.agg(
        runs=("experiment_id", "count"), repaired=("repaired", "sum"), edit_change=("edit_set_change", "mean"),
        test_change=("test_set_change", "mean"), drawdown_change=("drawdown_set_change", "mean"),
        runtime=("repair_runtime_seconds", "median"),
    ).reset_index()
    summary["repaired"] = summary["repaired"].astype(int)
    summary.columns = ["edit-set type", "edit points (requested)", "runs", "repaired", "mean Δ edit acc.",
                       "mean Δ test acc.", "mean Δ drawdown acc.", "median runtime (s)"]
    return summary.astype(object)


def key_tables(summary: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's repair page, from summary.json."""
    records = summary["records"]
    base = summary.get("base", {})
    tables = []
    if "criteria" in summary:
        document = summary["criteria"]
        tables.append(criteria_table(criteria_of(document), "Criteria: preconditions, the expected result, our checks",
                                     f"{study_verdict_note(document)} An expectation whose precondition was not met is "
                                     "'not testable', never 'fail'; checks are not in the verdict."))
    if records:
        tables.append(Table(
            "Grid summary per edit-set type and size", grid_by_type(records),
            "Δ = repaired − baseline accuracy, averaged over the runs whose LP was solved (a repair is provable: the "
            "edit set reaches the margin by construction). The drawdown set is the test set without the edit points.",
        ))
    tables.append(Table(
        f"Every run of the grid ({summary.get('repaired', 0)} of {summary.get('runs', len(records))} repaired)",
        frame(sorted(records, key=grid_order), RUN_COLUMNS),
        f"Base network: test accuracy {base.get('test_accuracy', float('nan')):.4g} on {base.get('num_test', '?')} images; "
        "results/repair/experiment_data.csv has every column.",
    ))
    return tables
