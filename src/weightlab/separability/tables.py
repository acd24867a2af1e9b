"""The separability study's key tables: every success criterion of the original study with its
threshold, measured value and verdict, and the final Ψ per condition over seeds."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.tables import Table, frame, verdict

CRITERIA_COLUMNS = {"id": "criterion", "statement": "expectation", "threshold": "threshold", "measured": "measured",
                    "verdict": "verdict", "detail": "detail"}


def key_tables(criteria: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's separability page, from success_criteria.json."""
    rows = [{**c, "verdict": verdict(c["passed"])} for c in criteria["criteria"]]
    counts = criteria["counts"]
    conditions = criteria["aggregate"]["conditions"]
    final = [{"condition": name, "seeds": criteria.get("seeds", {}).get(name), **values} for name, values in conditions.items()]
    effects = [{"comparison": name.replace("_vs_", " vs "), "d": d} for name, d in criteria["aggregate"].get("cohens_d", {}).items()]
    return [
        Table(f"Success criteria ({counts['passed']} pass, {counts['failed']} fail, {counts['not_evaluable']} not evaluable)",
              frame(rows, CRITERIA_COLUMNS),
              "Thresholds are the original study's (config key separability.criteria); 'not evaluable' names what is missing."),
        Table("Final Ψ per condition", frame(final, {"condition": "condition", "seeds": "seeds", "n": "runs", "mean": "mean Ψ",
                                                      "std": "std over seeds"}),
              "Ψ is held-out accuracy (experiments A, C) or the IOI logit difference (B); the std needs two or more seeds."),
        Table("Effect sizes between conditions (Cohen's d of final Ψ)", frame(effects, {"comparison": "comparison", "d": "Cohen's d"}),
              "Pooled-standard-deviation d over seeds; undefined (—) with fewer than two seeds per condition or no spread."),
    ]
