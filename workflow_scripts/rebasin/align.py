"""Weight matching: permute `other` into the basis of `ref` and save the aligned checkpoint."""
import time

from weightlab.checkpoints import load_checkpoint, save_checkpoint
from weightlab.io import write_json
from weightlab.provenance import provenance
from weightlab.rebasin.models import ARCHITECTURES
from weightlab.rebasin.paths import align
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    ref, payload_ref = load_checkpoint(step.input.ref, ARCHITECTURES)
    other, payload_other = load_checkpoint(step.input.other, ARCHITECTURES)
    started = time.perf_counter()
    aligned_state, match = align(ref, other, step.params.matching["max_iter"], step.params.seed)
    seconds = time.perf_counter() - started
    step.log.info("matched in %d sweeps, %.2f s; objective %s", match.iterations, seconds, match.objective_history)
    save_checkpoint(step.output.checkpoint, other, payload_other["arch"], payload_other["arch_kwargs"],
                    {**payload_other["metadata"], "aligned_to": step.wildcards.ref}, state_dict=aligned_state)
    write_json(step.output.match, {
        "ref": step.wildcards.ref, "other": step.wildcards.other,
        "iterations": match.iterations, "seconds": seconds, "objective_history": match.objective_history,
        "fraction_units_moved": match.fraction_moved(),
        "provenance": provenance({"matching": step.params.matching}, step.params.seed),
    })
