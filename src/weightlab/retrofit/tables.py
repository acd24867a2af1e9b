"""The retrofit study's key table: each method's final FFN Gram conditioning and perplexity
against the unmodified baseline (summary.json)."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.tables import Table, criteria_table, frame, study_verdict_note
from weightlab.verdicts import criteria_of

COLUMNS = {
    "method": "run", "steps": "steps", "transports": "transport steps", "final_conditioning": "FFN Gram conditioning",
    "conditioning_change": "conditioning change", "final_activation_conditioning": "activation-covariance conditioning",
    "final_perplexity": "validation perplexity", "perplexity_change": "perplexity change",
    "seconds_per_100_steps": "seconds per 100 steps",
}


def key_tables(summary: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's retrofit page."""
    base = summary["baseline"]
    rows = [{"method": "baseline (unmodified)", "steps": 0, "transports": 0, "final_conditioning": base["conditioning"],
             "final_activation_conditioning": base.get("activation_conditioning"), "final_perplexity": base["perplexity"]}]
    rows += [{**run, "method": name} for name, run in summary["runs"].items()]
    criteria = []
    if "criteria" in summary:
        document = summary["criteria"]
        criteria = [criteria_table(criteria_of(document), "Criteria: preconditions and the original's expected results",
                                   f"{study_verdict_note(document)} The original gives '~' numbers; each threshold says how "
                                   "'about' is read (ours). An expectation whose precondition was not met is 'not testable'.")]
    return [*criteria, Table(
        "Continued training three ways against the baseline", frame(rows, COLUMNS),
        "Changes are relative to the baseline ((final − baseline) / baseline). FFN Gram conditioning: condition number "
        "of each FFN weight's smaller-side Gram, averaged over layers (the original's 'FF Gram conditioning'); "
        "activation-covariance conditioning is our addition. "
        f"Lowest conditioning: {summary.get('lowest_conditioning')}; lowest perplexity: {summary.get('lowest_perplexity')}. "
        "The original study expects conditioning and perplexity to fall in the order standard < gram_only < geometry; "
        "its absolute numbers are for its own model, so the criteria compare relative changes.",
    )]
