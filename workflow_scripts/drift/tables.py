"""results/drift/tables.html: the drift statistics for the report."""
from weightlab.drift.tables import key_tables
from weightlab.io import read_json
from weightlab.script import rule_step
from weightlab.tables import write_page

with rule_step(snakemake) as step:
    statistics, groups = read_json(step.input.statistics), read_json(step.input.groups)
    write_page(step.output.tables, "Safety-neuron drift under LoRA: statistics", key_tables(statistics, groups),
               {step.input.statistics: statistics.get("provenance"), step.input.groups: groups.get("provenance")})
