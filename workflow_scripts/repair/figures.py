"""Figures of the repair grid: accuracy vs edit-set size, runtime vs size, drawdown."""
from weightlab.io import read_json, save_figure
from weightlab.repair.figures import accuracy_vs_size, drawdown, runtime_vs_size
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    records = read_json(step.input.summary)["records"]
    save_figure(accuracy_vs_size(records), step.output.accuracy)
    save_figure(runtime_vs_size(records), step.output.runtime)
    save_figure(drawdown(records), step.output.drawdown)
