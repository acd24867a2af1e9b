"""Figures: the verdict on one page, barrier comparison and interpolation paths."""
from weightlab.io import read_json, save_figure
from weightlab.rebasin.barriers import barrier_table
from weightlab.rebasin.figures import barrier_comparison, interpolation_paths, verdict_summary
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    barriers = read_json(step.input.barriers)
    save_figure(barrier_comparison(barrier_table(barriers)), step.output.barriers)
    save_figure(interpolation_paths(barriers), step.output.paths)
    save_figure(verdict_summary(read_json(step.input.report)), step.output.summary)
