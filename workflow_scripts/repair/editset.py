"""Draw one edit set (type x target class x size) from the base model's test predictions."""
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.repair.editsets import draw_edit_set, parse_target
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    wildcards, seed = step.wildcards, step.params.seed
    base = read_npz(step.input.predictions)
    edit_set = draw_edit_set(
        wildcards.edit_type, int(wildcards.edit_size), base["labels"], base["predictions"], seed, parse_target(wildcards.edit_target),
    )
    step.log.info("%s: %d of %d requested (%d candidates)", edit_set.name, edit_set.actual_size, edit_set.requested_size,
                  edit_set.available)
    write_json(step.output[0], {**edit_set.to_json(), "provenance": provenance({"edit_set": edit_set.name}, seed)})
