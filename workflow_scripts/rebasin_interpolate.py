"""Loss, accuracy and SRS along the naive and the aligned path between two models."""
from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, write_json
from weightlab.models import load_checkpoint
from weightlab.provenance import provenance
from weightlab.rebasin import evaluation_sets, interpolation_path, path_curves, reset_images
from weightlab.runtime import configure, resolve_device
from weightlab.script import logged

with logged(snakemake.log[0]):
    params, wildcards = snakemake.params, snakemake.wildcards
    configure(snakemake.threads)
    device = resolve_device(params.device)
    dataset = dataset_from_arrays(read_npz(snakemake.input.images))
    colours = read_npz(snakemake.input.environments)
    settings, patch_size = params.interpolation, params.patch["size"]
    eval_sets = evaluation_sets(dataset, colours, patch_size, settings["eval_size"], params.seed)
    reset = reset_images(dataset, colours, [wildcards.ref, wildcards.other], patch_size, settings["bn_reset_size"], params.seed)
    model, _ = load_checkpoint(snakemake.input.ref, device)
    state_ref = {k: v.clone() for k, v in model.state_dict().items()}
    curves = {}
    for method, path in (("naive", snakemake.input.other), ("aligned", snakemake.input.aligned)):
        state_other = load_checkpoint(path)[0].state_dict()
        points = interpolation_path(model, state_ref, state_other, params.alphas, eval_sets, reset, device, desc=f"{method} {wildcards.ref}-{wildcards.other}")
        curves[method] = path_curves(points)
    write_json(snakemake.output[0], {
        "ref": wildcards.ref, "other": wildcards.other, "alphas": params.alphas, **curves,
        "provenance": provenance({"interpolation": settings, "patch": params.patch}, params.seed),
    })
