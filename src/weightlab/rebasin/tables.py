"""The Re-Basin study's key tables: each model's reliance on the patch, every barrier, and each
expected result of the original study as a criterion."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.rebasin.barriers import barrier_table
from weightlab.tables import Table, frame, verdict


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


def _criteria_rows(criteria: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"criterion": name, "statement": c["statement"], "source": c["source"], "threshold": c["threshold"],
             "measured": c["measured"], "verdict": verdict(c["held"])} for name, c in criteria.items()]


CRITERIA_COLUMNS = {"criterion": "criterion", "statement": "expectation", "source": "source", "threshold": "threshold",
                    "measured": "measured", "verdict": "verdict"}


def key_tables(barriers: Mapping[str, Any], srs: Mapping[str, Any], report: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's Re-Basin page, from barriers.json, srs.json and final_report.json."""
    return [
        Table("Expected results of the original study", frame(_criteria_rows(report["criteria"]), CRITERIA_COLUMNS),
              f"Hypothesis: {report['hypothesis']} Verdict: {report['verdict']}."),
        Table("Additional checks (ours, not in the verdict)", frame(_criteria_rows(report.get("additional_checks", {})), CRITERIA_COLUMNS)),
        model_table(srs),
        barrier_rows_table(barriers),
    ]
