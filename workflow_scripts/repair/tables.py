"""results/repair/tables.html: the repair grid's key tables for the report."""
from weightlab.io import read_json
from weightlab.repair.tables import key_tables
from weightlab.script import rule_step
from weightlab.tables import write_page

with rule_step(snakemake) as step:
    summary = read_json(step.input.summary)
    write_page(step.output.tables, "Provable repair: the experiment grid", key_tables(summary), {step.input.summary: summary.get("provenance")})
