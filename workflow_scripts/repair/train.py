"""Train the AlexNet-style base model of the repair study with the shared training loop."""
from weightlab.checkpoints import save_checkpoint
from weightlab.config import settings_dataclass
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.repair.base import train_base_model
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays
from weightlab.vision.training import TrainConfig

with rule_step(snakemake) as step:
    params = step.params
    device = step.device
    generator = step.seed()
    dataset = dataset_from_arrays(read_npz(step.input.images))
    step.log.info("training %s on %d %s images, device %s", params.model["arch"], len(dataset.train), dataset.name, device)
    train = settings_dataclass(TrainConfig, params.train, "repair.train")
    base = train_base_model(dataset, params.model, train, params.monitor_size, device, generator)
    metadata = {"study": "repair", "test_accuracy": base.test_accuracy}
    save_checkpoint(step.output.checkpoint, base.model, base.arch, base.arch_kwargs, metadata)
    write_json(step.output.history, {
        "history": base.history, "test_accuracy": base.test_accuracy, "data": dataset.name,
        "provenance": provenance({"model": params.model, "train": params.train}, params.seed),
    })
