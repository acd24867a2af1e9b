"""results/rebasin/width_sweep.json (barriers against width, the expectation and its verdict) and
figures/width_sweep.png."""
from weightlab.io import read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.figures import width_sweep_figure
from weightlab.rebasin.report import Thresholds
from weightlab.rebasin.width import keyed_by_width, sweep_document
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params = step.params
    per_width = len(params.kinds)
    interpolations = keyed_by_width(list(map(read_json, step.input.interpolations)), params.multipliers, per_width)
    alignments = keyed_by_width(list(map(read_json, step.input.alignments)), params.multipliers, per_width)
    t = Thresholds.from_config(params.rebasin["criteria"])
    sweep = sweep_document(interpolations, alignments, params.kinds, params.rebasin["barrier_env"], params.models,
                           t.id_accuracy_min, t.alignment_logit_gap_max)
    for width, groups in sweep["summary"].items():
        step.log.info("x%s: %s", width, {k: round(v["mean"], 4) for k, v in groups.items() if v["mean"] is not None})
    step.log.info("width sweep: %s (%s)", sweep["verdict"], sweep["reason"])
    write_json(step.output.sweep, {**sweep, "provenance": provenance(params.rebasin, params.seed)})
    save_figure(width_sweep_figure(sweep), step.output.figure)
