"""results/barriers.json: loss, accuracy and semantic barriers of every pair, naive and aligned."""
from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.barriers import barriers_document
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params = step.params
    interpolations = {key: read_json(path) for key, path in step.input.items()}
    document = barriers_document(interpolations, params.kinds, params.rebasin["barrier_env"])
    for key, pair in document["pairs"].items():
        step.log.info("%s (%s): loss barrier naive %.4f aligned %.4f", key, pair["kind"],
                      pair["naive"]["loss_barrier"], pair["aligned"]["loss_barrier"])
    write_json(step.output[0], {**document, "provenance": provenance(params.rebasin, params.seed)})
