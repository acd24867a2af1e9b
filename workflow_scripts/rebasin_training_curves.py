"""Figure: training curves of every model."""
from pathlib import Path

from weightlab.io import read_json, save_figure
from weightlab.plotting import training_curves
from weightlab.script import logged

with logged(snakemake.log[0]):
    histories = {Path(p).stem: read_json(p)["history"] for p in snakemake.input}
    save_figure(training_curves(histories), snakemake.output[0])
