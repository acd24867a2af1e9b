"""The drift study's key tables: the preconditions, the effect sizes behind the verdict (three
controls, module-clustered intervals), the power check, refusal rates per stage with intervals
and the neuron groups' sizes (statistical_results.json, neuron_groups_summary.json)."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.drift.criteria import measures_text
from weightlab.drift.design import HYPOTHESES
from weightlab.tables import Table, criteria_table, frame, study_verdict_note
from weightlab.verdicts import criteria_of

EFFECT_COLUMNS = {"group": "safety group", "measure": "measure", "control": "control", "n_group": "neurons", "d": "d", "ci": "CI",
                  "equivalence_ci": "equivalence CI", "reading": "reading"}
POWER_COLUMNS = {"group": "safety group", "measure": "measure", "smallest_detectable_d": "smallest detectable d (power 0.8)",
                 "equivalence_power_at_zero": "P(no differential drift | d = 0)", "curve": "P(H1) by planted d"}


def effect_rows(statistics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (safety group, measure, control): verdict measures first, the primary control
    first within each."""
    primary = statistics["primary_control"]
    verdict_measures = statistics["verdict_measures"]
    rows = []
    for group, by_measure in statistics["comparisons"].items():
        for measure in sorted(by_measure, key=lambda m: (m not in verdict_measures, m)):
            for control in sorted(by_measure[measure], key=lambda c: c != primary):
                result = by_measure[measure][control]
                label = measure if measure in verdict_measures else f"{measure} (secondary)"
                rows.append({"group": group, "measure": label, "control": f"{control} (primary)" if control == primary else control,
                             "n_group": result.get("n_group"), "d": result["d"], "ci": result["ci"], "equivalence_ci": result["equivalence_ci"],
                             "reading": result["reading"].replace("_", " ")})
    return rows


def power_rows(statistics: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"group": g, "measure": m, "smallest_detectable_d": p["smallest_detectable_d"], "equivalence_power_at_zero": p["equivalence_power_at_zero"],
             "curve": ", ".join(f"{row['shift_d']:g}: {row['power_h1']:.2f}" for row in p["curve"])}
            for g, by_measure in statistics.get("power", {}).items() for m, p in by_measure.items()]


def key_tables(statistics: Mapping[str, Any], groups: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's drift page."""
    t = statistics["thresholds"]
    stages = [{"stage": stage.replace("_", " "), **{k: f"{v['rate']:.3g} [{v['interval'][0]:.2f}, {v['interval'][1]:.2f}] (n {v['n']})"
                                                     if v.get("interval") else v.get("rate") for k, v in rates.items()}}
              for stage, rates in statistics.get("refusal", {}).items()]
    sizes = [{"group": name, "neurons": count} for name, count in groups.get("counts", {}).items()]
    failed = statistics.get("failed_preconditions") or []
    verdict = f"not testable (failed: {', '.join(failed)})" if failed else statistics["verdict"].replace("_", " ")
    return [
        criteria_table(criteria_of(statistics["criteria_document"]), f"Criteria: preconditions, expectations, checks (drift reading: {verdict})",
                       f"{study_verdict_note(statistics['criteria_document'])} Preconditions say whether the run can tell H1 from no "
                       "differential drift; an expectation whose precondition failed is not testable. Thresholds of the preconditions "
                       "are ours."),
        Table("Drift of safety neurons against controls", frame(effect_rows(statistics), EFFECT_COLUMNS),
              f"H1: {HYPOTHESES['H1']} — d ≥ {t['h1_min_d']} with the {t['confidence']:.0%} CI above 0. No differential drift: "
              f"{HYPOTHESES['no_differential_drift']} — the {t['equivalence_interval']:.0%} CI inside ±{t['margin']} (two one-sided tests). "
              "d is in within-module standard deviations of the measure (regression: of log drift), positive when the safety group "
              f"drifted more; intervals from {t['n_boot']} bootstrap resamples of modules, at step {statistics.get('final_step')}. "
              f"The verdict reads {measures_text(statistics.get('verdict_measures', ('cosine', 'l2')))} change against the module- "
              "and norm-matched control."),
        Table("Power check: planted effects", frame(power_rows(statistics), POWER_COLUMNS),
              "A random group with the safety group's per-module counts, its drift shifted by d within-module SDs, analysed as the "
              "safety groups are."),
        Table("Refusal rate per stage", frame(stages, {"stage": "stage", "harmful": "harmful prompts", "benign": "benign prompts"}),
              "Fraction of held-out prompts whose greedy answer opens with a refusal phrase (\"I'm sorry\", \"I cannot\", ...), with "
              "its 95% Wilson interval."),
        Table("Neuron groups", frame(sizes, {"group": "group", "neurons": "neurons"}),
              f"Out of {groups.get('total_neurons', '?')} neurons in {groups.get('modules', '?')} modules."),
    ]
