"""Mechanism verification: ID, OOD and counterfactual accuracy and the SRS of every model."""
from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, write_json
from weightlab.models import load_checkpoint
from weightlab.provenance import provenance
from weightlab.rebasin import evaluate_point, evaluation_sets
from weightlab.runtime import configure, resolve_device
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    params = snakemake.params
    configure(snakemake.threads)
    device = resolve_device(params.device)
    dataset = dataset_from_arrays(read_npz(snakemake.input.images))
    eval_sets = evaluation_sets(dataset, read_npz(snakemake.input.environments), params.patch["size"])
    models = {}
    for name, path in zip(params.models, snakemake.input.checkpoints):
        metrics = evaluate_point(load_checkpoint(path, device)[0], eval_sets, device)
        metrics["id_accuracy"] = metrics["A_accuracy"]
        models[name] = metrics
        log.info("%s: ID %.3f OOD %.3f CF %.3f flip %.3f SRS %.3f", name, metrics["id_accuracy"],
                 metrics["ood_accuracy"], metrics["cf_accuracy"], metrics["flip_rate"], metrics["srs"])
    write_json(snakemake.output[0], {
        "models": models,
        "definition": "SRS = 0.4*(ID - OOD accuracy) + 0.3*(ID - counterfactual accuracy) + 0.3*flip rate; ID = env A test, OOD = no patch, counterfactual = env A test with the patch colour swapped",
        "provenance": provenance({"patch": params.patch, "test_images": len(dataset.test)}, params.seed),
    })
