"""Figure: training curves of every model."""
from weightlab.io import read_json, save_figure
from weightlab.rebasin.figures import training_curves
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    histories = {record["model"]: record["history"] for record in map(read_json, step.input)}
    save_figure(training_curves(histories), step.output[0])
