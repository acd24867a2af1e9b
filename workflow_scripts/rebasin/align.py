"""Weight matching: permute `other` into the basis of `ref`, save the aligned checkpoint, and check
that it computes `other`'s function (largest logit difference on the first test images of env A)."""
import time

import numpy as np

from weightlab.checkpoints import load_checkpoint, save_checkpoint
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.environments import environment_split
from weightlab.rebasin.models import ARCHITECTURES
from weightlab.rebasin.paths import ALIGNMENT_CHECK_IMAGES, align, function_gap
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    ref, payload_ref = load_checkpoint(step.input.ref, ARCHITECTURES)
    other, payload_other = load_checkpoint(step.input.other, ARCHITECTURES)
    started = time.perf_counter()
    aligned_state, match = align(ref, other, step.params.matching["max_iter"], step.params.seed)
    seconds = time.perf_counter() - started
    step.log.info("matched in %d sweeps, %.2f s; objective %s", match.iterations, seconds, match.objective_history)
    save_checkpoint(step.output.checkpoint, other, payload_other["arch"], payload_other["arch_kwargs"],
                    {**payload_other["metadata"], "aligned_to": step.wildcards.ref}, state_dict=aligned_state)
    aligned, _ = load_checkpoint(step.output.checkpoint, ARCHITECTURES)
    dataset = dataset_from_arrays(read_npz(step.input.images))
    first = np.arange(min(ALIGNMENT_CHECK_IMAGES, len(dataset.test)))
    images, _ = environment_split(dataset, read_npz(step.input.environments), "test_A", step.params.patch["size"], first)
    gap = function_gap(other, aligned, images)
    step.log.info("aligned checkpoint vs %s: largest |logit difference| %.3g on %d test images", step.wildcards.other, gap, len(first))
    write_json(step.output.match, {
        "ref": step.wildcards.ref, "other": step.wildcards.other,
        "iterations": match.iterations, "seconds": seconds, "objective_history": match.objective_history,
        "fraction_units_moved": match.fraction_moved(),
        "function_check": {"max_abs_logit_difference": gap, "images": len(first), "env": "A"},
        "provenance": provenance({"matching": step.params.matching}, step.params.seed),
    })
