"""results/rebasin/summary.json (all numbers) and final_report.json (the hypothesis, checked)."""
from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.report import Thresholds, hypothesis_report, summary
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    barriers, srs = read_json(step.input.barriers), read_json(step.input.srs)["models"]
    histories = {record["model"]: record["history"] for record in map(read_json, step.input.histories)}
    block = provenance({"rebasin": step.params.rebasin, "data": step.params.data}, step.params.seed)
    write_json(step.output.summary, {**summary(barriers, srs, histories, list(map(read_json, step.input.matches))), "provenance": block})
    report = hypothesis_report(barriers, srs, Thresholds.from_config(step.params.rebasin["criteria"]))
    step.log.info("hypothesis %s", report["verdict"])
    write_json(step.output.report, {**report, "provenance": block})
