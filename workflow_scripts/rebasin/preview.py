"""Figure: the same test images in every environment."""
from weightlab.io import read_npz, save_figure
from weightlab.rebasin.figures import environments_preview
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    dataset = dataset_from_arrays(read_npz(step.input.images))
    figure = environments_preview(dataset, read_npz(step.input.environments), step.params.patch)
    save_figure(figure, step.output[0])
