"""results/retrofit/summary.json (every method against the unmodified baseline) and trajectories.png."""
from pathlib import Path

from weightlab.io import read_json, save_figure, write_json
from weightlab.provenance import provenance
from weightlab.retrofit import comparison_table, summarise, trajectory_figure
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    results = {Path(path).stem: read_json(path) for path in snakemake.input.runs}
    summary = summarise(results, read_json(snakemake.input.baseline)["initial"])
    log.info("comparison:\n%s", comparison_table(summary))
    write_json(snakemake.output.summary, {**summary, "provenance": provenance(snakemake.params.retrofit, snakemake.params.seed)})
    save_figure(trajectory_figure(results), snakemake.output.figure)
