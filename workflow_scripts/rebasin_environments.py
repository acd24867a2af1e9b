"""Patch colours of every environment (train A/B/A+B, test A/B/none/counterfactual)."""
from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, write_npz
from weightlab.script import logged
from weightlab.spurious import alignment_rate, build_environments

with logged(snakemake.log[0]) as log:
    dataset = dataset_from_arrays(read_npz(snakemake.input[0]))
    patch = snakemake.params.patch
    colours = build_environments(
        dataset.train.labels, dataset.test.labels, patch["p_align_a"], patch["p_align_b"], snakemake.params.seed + 101
    )
    for key, values in colours.items():
        labels = dataset.train.labels if key.startswith("train") else dataset.test.labels
        log.info("%-10s patch colour agrees with label: %.3f", key, alignment_rate(values, labels))
    write_npz(snakemake.output[0], **colours)
