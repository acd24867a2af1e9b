"""The separability study's figures, drawn from the audit logs."""
from weightlab.io import read_json, save_figure
from weightlab.script import rule_step
from weightlab.separability import figures
from weightlab.separability.criteria import by_run

with rule_step(snakemake) as step:
    runs = by_run(read_json(path) for path in step.input.logs)
    save_figure(figures.constraint_dynamics(runs), step.output.exp_a)
    save_figure(figures.ioi_compensation(runs), step.output.exp_b)
    save_figure(figures.grokking_phase(runs), step.output.exp_c_phase)
    save_figure(figures.grokking_fourier(runs), step.output.exp_c_fourier)
    save_figure(figures.superposition_variance(runs), step.output.exp_d)
