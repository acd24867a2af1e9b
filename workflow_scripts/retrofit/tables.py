"""results/retrofit/tables.html: the retrofit summary table for the report."""
from weightlab.io import read_json
from weightlab.retrofit.tables import key_tables
from weightlab.script import rule_step
from weightlab.tables import write_page

with rule_step(snakemake) as step:
    summary = read_json(step.input.summary)
    write_page(step.output.tables, "Geometry retrofit: summary", key_tables(summary), {step.input.summary: summary.get("provenance")})
