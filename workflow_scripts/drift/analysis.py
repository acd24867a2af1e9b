"""The drift verdict: each safety group against controls matched on module and row norm, on
module only, and a regression on log norm with module intercepts (module-clustered bootstrap
intervals); a planted-effect power check; the preconditions; the text report and the figures."""
from weightlab.drift.criteria import (
    alignment_refuses,
    criteria_document_of,
    expectations,
    finetune_learns,
    finetune_lowers_refusal,
    study_verdict,
    test_has_power,
)
from weightlab.drift.design import SAFETY_GROUPS
from weightlab.drift.effects import VERDICT_MEASURES, Population, Thresholds, analyse_population
from weightlab.drift.figures import drift_timeseries_figure, final_distributions_figure, refusal_figure
from weightlab.drift.power import power_curve
from weightlab.drift.report import load_final_drift, load_population, read_drift_log, report_text
from weightlab.drift.stats import paired_change
from weightlab.io import atomic_path, read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, a = step.params, step.params.settings["analysis"]
    final, _ = load_final_drift(step.input.final)
    arrays = load_population(step.input.final)
    records = read_drift_log(step.input.log)
    finetune, summary = read_json(step.input.finetune), read_json(step.input.summary)
    alignment = read_json(step.input.alignment) if step.input.alignment else None
    population = Population.from_arrays(arrays)
    masks = {g: arrays[f"in:{g}"] for g in SAFETY_GROUPS if f"in:{g}" in arrays}
    thresholds = Thresholds.from_settings(a)
    stats = analyse_population(population, masks, thresholds, params.seed)
    is_control = ~sum(masks.values()).astype(bool)
    power_thresholds = Thresholds.from_settings({**a, "n_boot": a["power_n_boot"]})
    power = {g: {m: power_curve(population, mask, is_control, m, power_thresholds, repeats=a["power_repeats"], seed=params.seed)
                 for m in VERDICT_MEASURES} for g, mask in masks.items()}
    losses = finetune.get("heldout_losses")
    heldout = paired_change(losses["start"], losses["end"]) if losses else None
    start, end = finetune["refusal_before"], finetune["refusal_after"]
    preconditions = [alignment_refuses(start, a["harmful_refusal_min"], a["benign_refusal_max"]),
                     finetune_learns(heldout, a["min_heldout_fall"]),
                     finetune_lowers_refusal(start.get("harmful"), end.get("harmful")),
                     test_has_power(power, a["max_detectable_d"])]
    verdict = study_verdict(preconditions, stats["reading"])
    criteria = preconditions + expectations(stats, verdict["failed_preconditions"])
    rates = lambda block: {k: {"rate": v["rate"], "interval": v.get("interval"), "n": v["n"]} for k, v in block.items()}  # noqa: E731
    refusal = {"start_of_finetuning": rates(start), "after_finetuning": rates(end)}
    if alignment:
        refusal = {"before_alignment": rates(alignment["before"]), "after_alignment": rates(alignment["after"]), **refusal}
    final_median = {g: {m: v[m]["median"] for m in ("cosine", "l2", "relative")} for g, v in records[-1]["groups"].items()}
    result = {**stats, "power": power, "heldout_loss": heldout, "criteria": criteria, **verdict, "final_step": records[-1]["step"],
              "final_drift_median": final_median, "refusal": refusal, "trained_modules": len(finetune["trained_modules"]),
              "population": len(population), "excluded": finetune["excluded"], "provenance": provenance(params.study, params.seed)}
    text = report_text(result, records, summary, finetune, alignment)
    step.log.info("\n%s", text)
    document = criteria_document_of(criteria, stats["reading_by_group"], stats["reading"])
    step.log.info("study verdict: %s (%s)", document["verdict"], document["reason"])
    result["criteria_document"] = document
    write_json(step.output.statistics, result)
    write_json(step.output.criteria, {**document, "provenance": result["provenance"]})
    with atomic_path(step.output.text) as tmp:
        tmp.write_text(text)
    save_figure(drift_timeseries_figure(records), step.output.drift_timeseries)
    save_figure(final_distributions_figure(final), step.output.final_drift_distributions)
    save_figure(refusal_figure(records, alignment), step.output.refusal)
