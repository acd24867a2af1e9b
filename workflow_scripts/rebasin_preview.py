"""Figure: the same test images in every environment."""
import numpy as np

from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, save_figure
from weightlab.plotting import image_grid
from weightlab.rebasin import EVAL_ENVS, environment_split
from weightlab.script import logged

with logged(snakemake.log[0]):
    dataset = dataset_from_arrays(read_npz(snakemake.input.images))
    colours = read_npz(snakemake.input.environments)
    first_of_class = np.array([np.flatnonzero(dataset.test.labels == c)[0] for c in range(len(dataset.classes))])
    rows = {
        f"{name} ({key})": environment_split(dataset, colours, key, snakemake.params.patch["size"], first_of_class)[0]
        for name, key in EVAL_ENVS.items()
    }
    labels = [dataset.classes[dataset.test.labels[i]] for i in first_of_class]
    title = f"{dataset.name}: env A (patch agrees {snakemake.params.patch['p_align_a']:.0%}), env B ({snakemake.params.patch['p_align_b']:.0%}), no patch, colour swapped"
    save_figure(image_grid(rows, labels, title), snakemake.output[0])
