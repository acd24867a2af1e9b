"""The Re-Basin study's key tables: the criteria (preconditions, each expected result of the
original study, our checks), each model's reliance on the patch and every barrier."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.rebasin.barriers import barrier_table
from weightlab.tables import Table, criteria_table, frame, study_verdict_note
from weightlab.verdicts import criteria_of


def model_table(srs: Mapping[str, Any]) -> Table:
    rows = [{"model": name, **values} for name, values in srs["models"].items()]
    columns = {"model": "model", "id_accuracy": "ID accuracy", "ood_accuracy": "OOD accuracy (no patch)",
               "ood_drop": "OOD drop", "cf_accuracy_drop": "counterfactual drop", "flip_rate": "flip rate", "srs": "SRS"}
    return Table("Spurious Reliance Score per model", frame(rows, columns),
                 f"A models train on environment A (patch colour predicts the class), R models on A and B. {srs.get('definition', '')}")


def barrier_rows_table(barriers: Mapping[str, Any]) -> Table:
    columns = {"pair": "pair", "kind": "mechanisms", "method": "method", "loss_barrier": "loss barrier",
               "loss_barrier_mean_endpoint": "loss barrier (mean endpoint)", "accuracy_barrier": "accuracy barrier",
               "semantic_barrier": "semantic barrier"}
    definitions = barriers.get("definitions", {})
    note = (f"Measured on environment {barriers.get('barrier_env', '?')}; 'naive' interpolates the trained weights, "
            "'aligned' after weight matching. " + "; ".join(f"{k} = {v}" for k, v in definitions.items()))
    return Table("Barriers along the linear path", frame(barrier_table(barriers), columns), note)


def key_tables(barriers: Mapping[str, Any], srs: Mapping[str, Any], report: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's Re-Basin page, from barriers.json, srs.json and final_report.json:
    the criteria first (preconditions, expected results, our checks), then the measurements."""
    return [
        criteria_table(criteria_of(report), "Criteria: preconditions, expected results of the original study, our checks",
                       f"Hypothesis: {report['hypothesis']} {study_verdict_note(report)} An expected result whose precondition "
                       "was not met is 'not testable', never 'fail'; checks are ours and not in the verdict."),
        model_table(srs),
        barrier_rows_table(barriers),
    ]
