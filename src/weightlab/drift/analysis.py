"""The drift study's analysis of one run: each safety group against its controls, the planted-effect
power check, the preconditions and expectations, and the criteria document (weightlab.verdicts)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.drift.criteria import (
    alignment_refuses,
    criteria_document_of,
    expectations,
    finetune_learns,
    finetune_lowers_refusal,
    study_verdict,
    test_has_power,
)
from weightlab.drift.design import SAFETY_GROUPS, UNIT_METRICS, UNIT_VERDICT_MEASURES
from weightlab.drift.effects import SECONDARY_MEASURES, Population, Thresholds, analyse_population
from weightlab.drift.power import power_curve
from weightlab.drift.settings import AnalysisSettings
from weightlab.drift.stats import paired_change


def _rates(block: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {"rate": v["rate"], "interval": v.get("interval"), "n": v["n"]} for k, v in block.items()}


def analyse_run(arrays: Mapping[str, np.ndarray], records: Sequence[Mapping[str, Any]], finetune: Mapping[str, Any],
                alignment: Mapping[str, Any] | None, analysis: AnalysisSettings, seed: int, unit: str = "row") -> dict[str, Any]:
    """statistical_results.json without its provenance: `arrays` the population drift and group
    masks (`report.load_population`), `records` the drift log, `finetune` and `alignment` the
    stages' records, `analysis` the config's drift.analysis block. Its `criteria_document` is
    results/drift/criteria.json. `unit` ``weight`` reads L2 change (a single weight has no cosine),
    relative change secondary."""
    population = Population.from_arrays(arrays)
    masks = {g: arrays[f"in:{g}"] for g in SAFETY_GROUPS if f"in:{g}" in arrays}
    thresholds = Thresholds.from_settings(asdict(analysis))
    verdict_measures = UNIT_VERDICT_MEASURES[unit]
    stats = analyse_population(population, masks, thresholds, seed, (*verdict_measures, *SECONDARY_MEASURES), verdict_measures)
    is_control = ~sum(masks.values()).astype(bool)
    power_thresholds = Thresholds.from_settings({**asdict(analysis), "n_boot": analysis.power_n_boot})
    power = {g: {m: power_curve(population, mask, is_control, m, power_thresholds, repeats=analysis.power_repeats, seed=seed)
                 for m in verdict_measures} for g, mask in masks.items()}
    losses = finetune.get("heldout_losses")
    heldout = paired_change(losses["start"], losses["end"]) if losses else None
    start, end = finetune["refusal_before"], finetune["refusal_after"]
    preconditions = [alignment_refuses(start, analysis.harmful_refusal_min, analysis.benign_refusal_max),
                     finetune_learns(heldout, analysis.min_heldout_fall),
                     finetune_lowers_refusal(start.get("harmful"), end.get("harmful")),
                     test_has_power(power, analysis.max_detectable_d)]
    verdict = study_verdict(preconditions, stats["reading"])
    criteria = preconditions + expectations(stats, verdict["failed_preconditions"])
    refusal = {"start_of_finetuning": _rates(start), "after_finetuning": _rates(end)}
    if alignment:
        before = {"before_alignment": _rates(alignment["before"])} if alignment.get("before") else {}
        refusal = {**before, "after_alignment": _rates(alignment["after"]), **refusal}
    final_median = {g: {m: v[m]["median"] for m in UNIT_METRICS[unit]} for g, v in records[-1]["groups"].items()}
    return {**stats, "power": power, "heldout_loss": heldout, "criteria": criteria, **verdict, "final_step": records[-1]["step"],
            "final_drift_median": final_median, "refusal": refusal, "trained_modules": len(finetune["trained_modules"]),
            "population": len(population), "excluded": finetune["excluded"],
            "criteria_document": criteria_document_of(criteria, stats["reading_by_group"], stats["reading"], verdict_measures)}
