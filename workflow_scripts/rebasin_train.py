"""Train one model of the study (A* on env A, R* on env A+B) and save its checkpoint."""
from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, write_json
from weightlab.models import build_model, save_checkpoint
from weightlab.provenance import provenance
from weightlab.rebasin import evaluation_sets, training_seed, training_set
from weightlab.runtime import configure, resolve_device, seed_everything
from weightlab.script import logged
from weightlab.training import TrainConfig, train_classifier

with logged(snakemake.log[0]) as log:
    name, params = snakemake.wildcards.model, snakemake.params
    configure(snakemake.threads)
    device = resolve_device(params.device)
    seed = training_seed(name, params.seed, params.shared_seed)
    generator = seed_everything(seed)
    dataset = dataset_from_arrays(read_npz(snakemake.input.images))
    colours = read_npz(snakemake.input.environments)
    images, labels = training_set(dataset, colours, name, params.patch["size"])
    monitor = evaluation_sets(dataset, colours, params.patch["size"], size=1000, seed=params.seed)
    model_args = {k: v for k, v in params.model.items() if k != "arch"}
    model = build_model(params.model["arch"], **model_args)
    log.info("training %s on %d images, seed %d, device %s", name, len(labels), seed, device)
    history = train_classifier(
        model, images, labels, TrainConfig(**params.train), device, generator,
        eval_sets={k: monitor[k] for k in ("A", "none")}, desc=f"train {name}",
    )
    save_checkpoint(snakemake.output.checkpoint, model, params.model["arch"], model_args, {"name": name, "seed": seed})
    write_json(snakemake.output.history, {
        "model": name, "history": history,
        "provenance": provenance({"model": params.model, "train": params.train, "patch": params.patch}, seed),
    })
