"""Collect every repair run into results/repair/experiment_data.csv (the original study's columns)."""
from pathlib import Path

from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.repair import COLUMNS, write_grid_csv
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    records = [{k: v for k, v in read_json(Path(run) / "result.json").items() if k != "provenance"} for run in snakemake.input.runs]
    write_grid_csv(snakemake.output.csv, records)
    repaired = sum(bool(r["repair_successful"]) for r in records)
    log.info("%d runs, %d repaired, %d failed", len(records), repaired, len(records) - repaired)
    write_json(snakemake.output.summary, {
        "columns": list(COLUMNS), "runs": len(records), "repaired": repaired, "records": records,
        "base": read_json(snakemake.input.base),
        "provenance": provenance(snakemake.params.repair, snakemake.params.seed, ("highspy", "gurobipy")),
    })
