"""Mechanism verification: ID, OOD and counterfactual accuracy and the SRS of every model."""
from weightlab.checkpoints import load_checkpoint
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.environments import evaluation_sets
from weightlab.rebasin.models import ARCHITECTURES
from weightlab.rebasin.paths import mechanism_check
from weightlab.rebasin.spurious import SRS_DEFINITION
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    params = step.params
    dataset = dataset_from_arrays(read_npz(step.input.images))
    eval_sets = evaluation_sets(dataset, read_npz(step.input.environments), params.patch["size"])
    models = {}
    for path in step.input.checkpoints:
        model, payload = load_checkpoint(path, ARCHITECTURES, step.device)
        name = payload["metadata"]["name"]
        models[name] = metrics = mechanism_check(model, eval_sets, step.device)
        step.log.info("%s: ID %.3f OOD %.3f CF %.3f flip %.3f SRS %.3f", name, metrics["id_accuracy"],
                      metrics["ood_accuracy"], metrics["cf_accuracy"], metrics["flip_rate"], metrics["srs"])
    write_json(step.output[0], {
        "models": models, "definition": SRS_DEFINITION,
        "provenance": provenance({"patch": params.patch, "test_images": len(dataset.test)}, params.seed),
    })
