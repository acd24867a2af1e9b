"""Figures: barrier comparison and interpolation paths."""
from weightlab.io import read_json, save_figure
from weightlab.plotting import barrier_comparison, interpolation_paths
from weightlab.rebasin import barrier_table
from weightlab.script import logged

with logged(snakemake.log[0]):
    barriers = read_json(snakemake.input.barriers)
    save_figure(barrier_comparison(barrier_table(barriers)), snakemake.output.barriers)
    save_figure(interpolation_paths(barriers), snakemake.output.paths)
