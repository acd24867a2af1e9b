"""results/retrofit/summary.json (every method against the unmodified baseline), criteria.json (the
preconditions and the original's expected results; also inside summary.json) and trajectories.png."""
from pathlib import Path

from weightlab.io import read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.retrofit.criteria import criteria_json
from weightlab.retrofit.figures import trajectory_figure
from weightlab.retrofit.summary import comparison_table, summarise
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    results = {Path(path).stem: read_json(path) for path in step.input.runs}
    summary = summarise(results, read_json(step.input.baseline)["initial"])
    step.log.info("comparison:\n%s", comparison_table(summary))
    criteria = criteria_json(summary)
    step.log.info("study verdict: %s (%s)", criteria["verdict"], criteria["reason"])
    block = provenance(step.params.retrofit, step.params.seed)
    write_json(step.output.summary, {**summary, "criteria": criteria, "provenance": block})
    write_json(step.output.criteria, {**criteria, "provenance": block})
    save_figure(trajectory_figure(results), step.output.figure)
