"""Weight matching: permute `other` into the basis of `ref` and save the aligned checkpoint."""
import time

from weightlab.io import write_json
from weightlab.models import load_checkpoint, save_checkpoint
from weightlab.provenance import provenance
from weightlab.rebasin import align
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    ref, payload_ref = load_checkpoint(snakemake.input.ref)
    other, payload_other = load_checkpoint(snakemake.input.other)
    started = time.perf_counter()
    aligned_state, match = align(ref, other, snakemake.params.matching["max_iter"], snakemake.params.seed)
    seconds = time.perf_counter() - started
    log.info("matched in %d sweeps, %.2f s; objective %s", match.iterations, seconds, match.objective_history)
    save_checkpoint(snakemake.output.checkpoint, other, payload_other["arch"], payload_other["arch_kwargs"],
                    {**payload_other["metadata"], "aligned_to": snakemake.wildcards.ref}, state_dict=aligned_state)
    write_json(snakemake.output.match, {
        "ref": snakemake.wildcards.ref, "other": snakemake.wildcards.other,
        "iterations": match.iterations, "seconds": seconds, "objective_history": match.objective_history,
        "fraction_units_moved": {p: float((perm != range(len(perm))).mean()) for p, perm in match.perms.items()},
        "provenance": provenance({"matching": snakemake.params.matching}, snakemake.params.seed),
    })
