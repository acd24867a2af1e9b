"""results/barriers.json: loss, accuracy and semantic barriers of every pair, naive and aligned."""
from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.rebasin import pair_key, pair_record
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    params = snakemake.params
    pairs = {}
    for (ref, other, kind), path in zip(params.pairs, snakemake.input):
        pairs[pair_key(ref, other)] = pair_record(read_json(path), kind, params.barrier_env)
        log.info("%s (%s): loss barrier naive %.4f aligned %.4f", pair_key(ref, other), kind,
                 pairs[pair_key(ref, other)]["naive"]["loss_barrier"], pairs[pair_key(ref, other)]["aligned"]["loss_barrier"])
    write_json(snakemake.output[0], {
        "barrier_env": params.barrier_env,
        "definitions": {
            "loss_barrier": "max_a L(a) - max(L(0), L(1))",
            "loss_barrier_mean_endpoint": "max_a L(a) - (L(0) + L(1)) / 2 (Ainsworth et al.)",
            "accuracy_barrier": "min(acc(0), acc(1)) - min_a acc(a)",
            "semantic_barrier": "max_a |SRS(a) - ((1 - a) SRS(0) + a SRS(1))|",
        },
        "pairs": pairs,
        "provenance": provenance(params.rebasin, params.seed),
    })
