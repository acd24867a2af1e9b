"""results/separability/tables.html: the success criteria for the report."""
from weightlab.io import read_json
from weightlab.script import rule_step
from weightlab.separability.tables import key_tables
from weightlab.tables import write_page

with rule_step(snakemake) as step:
    criteria = read_json(step.input.criteria)
    write_page(step.output.tables, "Conservation of separability: success criteria", key_tables(criteria),
               {step.input.criteria: criteria.get("provenance")})
