"""results/rebasin/summary.json (all numbers) and final_report.json (the hypothesis, checked)."""
from pathlib import Path

from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.rebasin import barrier_table, group_means, hypothesis_report
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    barriers, srs = read_json(snakemake.input.barriers), read_json(snakemake.input.srs)["models"]
    rows = barrier_table(barriers)
    block = provenance({"rebasin": snakemake.params.rebasin, "data": snakemake.params.data}, snakemake.params.seed)
    write_json(snakemake.output.summary, {
        "models": srs,
        "final_training_epoch": {Path(p).stem: read_json(p)["history"][-1] for p in snakemake.input.histories},
        "alignment": {f"{m['ref']}-{m['other']}": {k: m[k] for k in ("iterations", "seconds", "fraction_units_moved")}
                      for m in map(read_json, snakemake.input.matches)},
        "barriers": rows,
        "means": {metric: group_means(rows, metric) for metric in ("loss_barrier", "loss_barrier_mean_endpoint", "accuracy_barrier", "semantic_barrier")},
        "provenance": block,
    })
    report = hypothesis_report(barriers, srs)
    log.info("hypothesis %s", report["verdict"])
    write_json(snakemake.output.report, {**report, "provenance": block})
