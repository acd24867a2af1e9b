"""results/rebasin/summary.json (all numbers), final_report.json (the hypothesis, checked: the
criterion records and the verdict) and criteria.json (the same records, as every study writes them)."""
from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.report import Thresholds, alignment_gaps, hypothesis_report, summary
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    barriers, srs = read_json(step.input.barriers), read_json(step.input.srs)["models"]
    histories = {record["model"]: record["history"] for record in map(read_json, step.input.histories)}
    matches = list(map(read_json, step.input.matches))
    block = provenance({"rebasin": step.params.rebasin, "data": step.params.data}, step.params.seed)
    write_json(step.output.summary, {**summary(barriers, srs, histories, matches), "provenance": block})
    report = hypothesis_report(barriers, srs, Thresholds.from_config(step.params.rebasin["criteria"]), alignment_gaps(matches))
    step.log.info("study verdict: %s (%s)", report["verdict"], report["reason"])
    write_json(step.output.report, {**report, "provenance": block})
    write_json(step.output.criteria, {**report, "provenance": block})
