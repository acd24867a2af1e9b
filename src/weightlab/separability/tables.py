"""The separability study's key tables: the preconditions and every success criterion of the
original study with its threshold, measured value, interval and verdict, the final Ψ per condition
over seeds, and the effect sizes between conditions."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.tables import Table, criteria_table, frame, study_verdict_note
from weightlab.verdicts import EXPECTATION, criteria_of


def key_tables(criteria: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's separability page, from success_criteria.json."""
    counts = criteria["counts"][EXPECTATION]
    conditions = criteria["aggregate"]["conditions"]
    final = [{"condition": name, "seeds": criteria.get("seeds", {}).get(name), **values} for name, values in conditions.items()]
    effects = [{"comparison": name.replace("_vs_", " vs "), "d": d} for name, d in criteria["aggregate"].get("cohens_d", {}).items()]
    return [
        criteria_table(criteria_of(criteria),
                       f"Criteria (expectations: {counts['pass']} pass, {counts['fail']} fail, {counts['not_testable']} not testable, "
                       f"{counts['not_evaluable']} not evaluable)",
                       f"{study_verdict_note(criteria)} Thresholds are the original study's (config key separability.criteria) "
                       "unless marked ours; an expectation whose precondition was not met is 'not testable', never 'fail'; "
                       "'not evaluable' names what is missing."),
        Table("Final Ψ per condition", frame(final, {"condition": "condition", "seeds": "seeds", "n": "runs", "mean": "mean Ψ",
                                                      "std": "std over seeds"}),
              "Ψ is held-out accuracy (experiments A, C) or the IOI logit difference (B); the std needs two or more seeds."),
        Table("Effect sizes between conditions (Cohen's d of final Ψ)", frame(effects, {"comparison": "comparison", "d": "Cohen's d"}),
              "Pooled-standard-deviation d over seeds; undefined (—) with fewer than two seeds per condition or no spread."),
    ]
