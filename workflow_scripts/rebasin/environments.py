"""Patch colours of every environment (train A/B/A+B, test A/B/none/counterfactual)."""
from weightlab.io import read_npz, write_npz
from weightlab.rebasin.design import environment_seed
from weightlab.rebasin.spurious import alignment_rate, build_environments
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    dataset = dataset_from_arrays(read_npz(step.input[0]))
    patch = step.params.patch
    colours = build_environments(
        dataset.train.labels, dataset.test.labels, patch["p_align_a"], patch["p_align_b"], environment_seed(step.params.seed),
        share_b=step.params.robust_mix,
    )
    for key, values in colours.items():
        labels = dataset.train.labels if key.startswith("train") else dataset.test.labels
        step.log.info("%-10s patch colour agrees with label: %.3f", key, alignment_rate(values, labels))
    write_npz(step.output[0], **colours)
