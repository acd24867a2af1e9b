"""Cohen's d of each safety group against its module-matched random control and the random group at
the last step (bootstrap CIs over neurons), the H1/H2 verdict, the criteria (preconditions and
expectations, criteria.json; also inside statistical_results.json), the text report and the figures."""
from weightlab.drift.criteria import criteria_json
from weightlab.drift.figures import drift_timeseries_figure, final_distributions_figure, refusal_figure
from weightlab.drift.report import load_final_drift, read_drift_log, report_text
from weightlab.drift.stats import analyse
from weightlab.io import atomic_path, read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, a = step.params, step.params.settings["analysis"]
    final, _ = load_final_drift(step.input.final)
    records = read_drift_log(step.input.log)
    finetune, summary = read_json(step.input.finetune), read_json(step.input.summary)
    alignment = read_json(step.input.alignment) if step.input.alignment else None
    stats = analyse(final, primary=a["primary_measure"], h1_min_d=a["h1_min_d"], h2_max_d=a["h2_max_d"],
                    n_boot=a["n_boot"], confidence=a["confidence"], seed=params.seed)
    rates = lambda block: {k: v["rate"] for k, v in block.items()}  # noqa: E731
    refusal = {"after_finetuning": rates(finetune["refusal_after"]), "start_of_finetuning": rates(finetune["refusal_before"])}
    if alignment:
        refusal = {"before_alignment": rates(alignment["before"]), "after_alignment": rates(alignment["after"]), **refusal}
    final_median = {g: {m: v[m]["median"] for m in ("cosine", "l2", "relative")} for g, v in records[-1]["groups"].items()}
    text = report_text(stats, records, summary, finetune, alignment)
    step.log.info("\n%s", text)
    criteria = criteria_json(stats, finetune, alignment)
    step.log.info("study verdict: %s (%s)", criteria["verdict"], criteria["reason"])
    block = provenance(params.study, params.seed)
    write_json(step.output.statistics, {
        **stats, "final_step": records[-1]["step"], "final_drift_median": final_median, "refusal": refusal,
        "trained_modules": len(finetune["trained_modules"]), "excluded": finetune["excluded"], "criteria": criteria,
        "provenance": block,
    })
    write_json(step.output.criteria, {**criteria, "provenance": block})
    with atomic_path(step.output.text) as tmp:
        tmp.write_text(text)
    save_figure(drift_timeseries_figure(records), step.output.drift_timeseries)
    save_figure(final_distributions_figure(final), step.output.final_drift_distributions)
    save_figure(refusal_figure(records, alignment), step.output.refusal)
