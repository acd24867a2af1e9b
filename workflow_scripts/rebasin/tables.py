"""results/rebasin/tables.html: the Re-Basin key tables for the report."""
from weightlab.io import read_json
from weightlab.rebasin.tables import key_tables
from weightlab.script import rule_step
from weightlab.tables import write_page

with rule_step(snakemake) as step:
    documents = {name: read_json(path) for name, path in step.input.items()}
    tables = key_tables(documents["barriers"], documents["srs"], documents["report"])
    sources = {path: documents[name].get("provenance") for name, path in step.input.items()}
    write_page(step.output.tables, "Re-Basin under spurious features: key tables", tables, sources)
