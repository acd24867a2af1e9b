"""The drift verdict: each safety group against controls matched on module and row norm, on
module only, and a regression on log norm with module intercepts (module-clustered bootstrap
intervals); a planted-effect power check; the preconditions; the text report and the figures."""
from weightlab.drift.analysis import analyse_run
from weightlab.drift.figures import drift_timeseries_figure, final_distributions_figure, refusal_figure
from weightlab.drift.report import load_final_drift, load_population, read_drift_log, report_text
from weightlab.drift.settings import AnalysisSettings, UnitSettings
from weightlab.io import atomic_path, read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params = step.params
    final, _ = load_final_drift(step.input.final)
    records = read_drift_log(step.input.log)
    finetune, summary = read_json(step.input.finetune), read_json(step.input.summary)
    alignment = read_json(step.input.alignment) if step.input.alignment else None
    result = analyse_run(load_population(step.input.final), records, finetune, alignment, AnalysisSettings.from_settings(params.settings), params.seed,
                         UnitSettings.from_settings(params.settings).unit)
    result["provenance"] = provenance(params.study, params.seed)
    text = report_text(result, records, summary, finetune, alignment)
    step.log.info("\n%s", text)
    document = result["criteria_document"]
    step.log.info("study verdict: %s (%s)", document["verdict"], document["reason"])
    write_json(step.output.statistics, result)
    write_json(step.output.criteria, {**document, "provenance": result["provenance"]})
    with atomic_path(step.output.text) as tmp:
        tmp.write_text(text)
    save_figure(drift_timeseries_figure(records), step.output.drift_timeseries)
    save_figure(final_distributions_figure(final), step.output.final_drift_distributions)
    save_figure(refusal_figure(records, alignment), step.output.refusal)
