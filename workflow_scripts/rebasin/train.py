"""Train one model of the study (A* on env A, R* on env A+B) and save its checkpoint."""
from weightlab.checkpoints import build_model, save_checkpoint
from weightlab.config import settings_dataclass
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.design import training_seed
from weightlab.rebasin.environments import evaluation_sets, training_set
from weightlab.rebasin.models import ARCHITECTURES
from weightlab.rebasin.paths import FORWARD_BATCH
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays
from weightlab.vision.training import TrainConfig, train_classifier

with rule_step(snakemake) as step:
    name, params = step.wildcards.model, step.params
    seed = training_seed(name, params.seed, params.shared_seed)
    generator = step.seed(seed)
    dataset = dataset_from_arrays(read_npz(step.input.images))
    colours = read_npz(step.input.environments)
    images, labels = training_set(dataset, colours, name, params.patch["size"])
    monitor = evaluation_sets(dataset, colours, params.patch["size"], size=params.monitor_size, seed=params.seed)
    model_args = {k: v for k, v in params.model.items() if k != "arch"}
    model = build_model(ARCHITECTURES, params.model["arch"], **model_args)
    step.log.info("training %s on %d images, seed %d, device %s", name, len(labels), seed, step.device)
    history = train_classifier(
        model, images, labels, settings_dataclass(TrainConfig, params.train, "rebasin.train"), step.device, generator,
        eval_sets={k: monitor[k] for k in ("A", "none")}, desc=f"train {name}", eval_forward_batch=FORWARD_BATCH,
    )
    save_checkpoint(step.output.checkpoint, model, params.model["arch"], model_args, {"name": name, "seed": seed})
    write_json(step.output.history, {
        "model": name, "history": history,
        "provenance": provenance({"model": params.model, "train": params.train, "patch": params.patch}, seed),
    })
