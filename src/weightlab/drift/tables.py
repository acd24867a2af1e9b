"""The drift study's key tables: the criteria (weightlab.verdicts), the effect sizes behind the
verdict, refusal rates per stage and the neuron groups' sizes (statistical_results.json, neuron_groups_summary.json)."""

from __future__ import annotations

from typing import Any, Mapping

from weightlab.drift.design import HYPOTHESES
from weightlab.drift.stats import classify
from weightlab.tables import Table, criteria_table, frame, study_verdict_note
from weightlab.verdicts import criteria_of

EFFECT_COLUMNS = {"group": "safety group", "control": "control", "measure": "measure", "n_group": "neurons",
                  "n_control": "control neurons", "mean_group": "mean (group)", "mean_control": "mean (control)",
                  "drift_d": "drift d", "drift_ci": "CI", "classification": "reading"}


def effect_rows(statistics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (safety group, control, measure), primary measure first, each read against the
    study's thresholds (H1, H2, safety_drifts_less or inconclusive)."""
    t = statistics["thresholds"]
    primary = statistics["primary_measure"]
    rows = []
    for group, controls in statistics["comparisons"].items():
        for control, measures in controls.items():
            for measure in sorted(measures, key=lambda m: (m != primary, m)):
                result = measures[measure]
                rows.append({"group": group, "control": control, **result,
                             "measure": f"{measure} (primary)" if measure == primary else measure,
                             "classification": classify(result["drift_d"], result["drift_ci"], t["h1_min_d"], t["h2_max_d"])})
    return rows


def key_tables(statistics: Mapping[str, Any], groups: Mapping[str, Any]) -> list[Table]:
    """The tables of the report's drift page."""
    t = statistics["thresholds"]
    stages = [{"stage": stage.replace("_", " "), **rates} for stage, rates in statistics.get("refusal", {}).items()]
    sizes = [{"group": name, "neurons": count} for name, count in groups.get("counts", {}).items()]
    verdicts = ", ".join(f"{g}: {v}" for g, v in statistics.get("verdict_by_group", {}).items())
    criteria = []
    if "criteria" in statistics:
        document = statistics["criteria"]
        criteria = [criteria_table(criteria_of(document), "Criteria: preconditions and the study's question",
                                   f"{study_verdict_note(document)} The drift comparison speaks to safety only when the start "
                                   "model refuses, the fine-tuning learns and it lowers refusal; otherwise its reading is "
                                   "'not testable'. Thresholds of the preconditions are ours.")]
    return [*criteria,
        Table(
            f"Drift of safety neurons against controls (study verdict: {statistics['verdict']})", frame(effect_rows(statistics), EFFECT_COLUMNS),
            f"H1: {HYPOTHESES['H1']} — drift d ≥ {t['h1_min_d']} with the CI above 0. H2: {HYPOTHESES['H2']} — "
            f"|drift d| < {t['h2_max_d']} with the CI inside ±{t['h1_min_d']}. drift d is Cohen's d signed so that positive "
            f"means the safety group drifted more, with a {t['confidence']:.0%} bootstrap CI ({t['n_boot']} resamples) at step "
            f"{statistics.get('final_step')}. The verdict reads the primary measure against the module-matched control ({verdicts}).",
        ),
        Table("Refusal rate per stage", frame(stages, {"stage": "stage", "harmful": "harmful prompts", "benign": "benign prompts"}),
              "Fraction of prompts answered with a refusal phrase (\"I'm sorry\", \"I cannot\", ...), by greedy decoding."),
        Table("Neuron groups", frame(sizes, {"group": "group", "neurons": "neurons"}),
              f"Out of {groups.get('total_neurons', '?')} neurons in {groups.get('modules', '?')} modules."),
    ]
