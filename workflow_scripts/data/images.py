"""Convert the configured image data set to results/data/images.npz (uint8, 32x32)."""
from weightlab.vision.data import dataset_to_arrays, load_dataset, subsample
from weightlab.io import write_npz
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    data = step.params.data
    dataset = load_dataset(data["name"], data["root"], data["download"])
    dataset = subsample(dataset, data["train_size"], data["test_size"], step.params.seed)
    step.log.info("%s: %d train, %d test images of shape %s", dataset.name, len(dataset.train), len(dataset.test), dataset.train.images.shape[1:])
    write_npz(step.output[0], **dataset_to_arrays(dataset))
