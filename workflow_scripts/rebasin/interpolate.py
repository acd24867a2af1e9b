"""Loss, accuracy and SRS along the naive and the aligned path between two models."""
from weightlab.checkpoints import load_checkpoint
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.environments import evaluation_sets, reset_images
from weightlab.rebasin.models import ARCHITECTURES
from weightlab.rebasin.paths import interpolation_paths, path_curves
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    params, wildcards, device = step.params, step.wildcards, step.device
    dataset = dataset_from_arrays(read_npz(step.input.images))
    colours = read_npz(step.input.environments)
    settings, patch_size = params.interpolation, params.patch["size"]
    eval_sets = evaluation_sets(dataset, colours, patch_size, settings["eval_size"], params.seed)
    reset = reset_images(dataset, colours, [wildcards.ref, wildcards.other], patch_size, settings["bn_reset_size"], params.seed)
    model, _ = load_checkpoint(step.input.ref, ARCHITECTURES, device)
    state_ref = {k: v.clone() for k, v in model.state_dict().items()}
    others = {method: load_checkpoint(path, ARCHITECTURES, device)[0].state_dict()
              for method, path in (("naive", step.input.other), ("aligned", step.input.aligned))}
    paths = interpolation_paths(model, state_ref, others, params.alphas, eval_sets, reset, device,
                                desc=f"{wildcards.ref}-{wildcards.other}")
    curves = {method: path_curves(points) for method, points in paths.items()}
    write_json(step.output[0], {
        "ref": wildcards.ref, "other": wildcards.other, "alphas": params.alphas, **curves,
        "provenance": provenance({"interpolation": settings, "patch": params.patch}, params.seed),
    })
