"""Train the AlexNet-style base model of the repair study with the shared training loop."""
from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, write_json
from weightlab.models import build_model, save_checkpoint
from weightlab.provenance import provenance
from weightlab.runtime import configure, resolve_device, seed_everything
from weightlab.script import logged
from weightlab.training import TrainConfig, evaluate, train_classifier

with logged(snakemake.log[0]) as log:
    params = snakemake.params
    configure(snakemake.threads)
    device = resolve_device(params.device)
    generator = seed_everything(params.seed)
    dataset = dataset_from_arrays(read_npz(snakemake.input.images))
    model_args = {k: v for k, v in params.model.items() if k != "arch"} | {"num_classes": len(dataset.classes)}
    model = build_model(params.model["arch"], **model_args)
    log.info("training %s on %d %s images, device %s", params.model["arch"], len(dataset.train), dataset.name, device)
    monitor = {"test": (dataset.test.images[:1000], dataset.test.labels[:1000])}
    history = train_classifier(
        model, dataset.train.images, dataset.train.labels, TrainConfig(**params.train), device, generator,
        eval_sets=monitor, desc="train repair base",
    )
    accuracy = evaluate(model, dataset.test.images, dataset.test.labels, device).accuracy
    save_checkpoint(snakemake.output.checkpoint, model, params.model["arch"], model_args, {"study": "repair", "test_accuracy": accuracy})
    write_json(snakemake.output.history, {
        "history": history, "test_accuracy": accuracy, "data": dataset.name,
        "provenance": provenance({"model": params.model, "train": params.train}, params.seed),
    })
