"""Figures of the repair grid: accuracy vs edit-set size, runtime vs size, drawdown."""
from weightlab.io import read_json, save_figure
from weightlab.repair_plots import accuracy_vs_size, drawdown, runtime_vs_size
from weightlab.script import logged

with logged(snakemake.log[0]):
    records = read_json(snakemake.input.summary)["records"]
    save_figure(accuracy_vs_size(records), snakemake.output.accuracy)
    save_figure(runtime_vs_size(records), snakemake.output.runtime)
    save_figure(drawdown(records), snakemake.output.drawdown)
