"""Collect every repair run into results/repair/experiment_data.csv (the original study's columns),
summary.json, and criteria.json (preconditions, expectation, drawdown; also inside summary.json)."""
from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.repair.criteria import criteria_json
from weightlab.repair.experiment import grid_summary, run_records, write_grid_csv
from weightlab.repair.solvers import SOLVER_PACKAGES
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    records = run_records(step.input.runs)
    write_grid_csv(step.output.csv, records)
    summary = grid_summary(records, read_json(step.input.base))
    step.log.info("%d runs, %d repaired, %d failed", summary["runs"], summary["repaired"], summary["runs"] - summary["repaired"])
    criteria = criteria_json(records, summary["base"], step.params.repair["lp"]["margin"])
    step.log.info("study verdict: %s (%s)", criteria["verdict"], criteria["reason"])
    block = provenance(step.params.repair, step.params.seed, SOLVER_PACKAGES)
    write_json(step.output.summary, {**summary, "criteria": criteria, "provenance": block})
    write_json(step.output.criteria, {**criteria, "provenance": block})
