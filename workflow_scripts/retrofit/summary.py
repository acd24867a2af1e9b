"""results/retrofit/summary.json (every method against the unmodified baseline) and trajectories.png."""
from pathlib import Path

from weightlab.io import read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.retrofit.figures import trajectory_figure
from weightlab.retrofit.summary import comparison_table, summarise
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    results = {Path(path).stem: read_json(path) for path in step.input.runs}
    summary = summarise(results, read_json(step.input.baseline)["initial"])
    step.log.info("comparison:\n%s", comparison_table(summary))
    write_json(step.output.summary, {**summary, "provenance": provenance(step.params.retrofit, step.params.seed)})
    save_figure(trajectory_figure(results), step.output.figure)
