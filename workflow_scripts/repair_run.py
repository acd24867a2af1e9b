"""Repair one layer on one edit set by an LP, evaluate the result; a failed solve is a result too."""
from pathlib import Path

from weightlab.data import dataset_from_arrays
from weightlab.editsets import EditSet
from weightlab.io import read_json, read_npz, write_json
from weightlab.models import load_checkpoint, save_checkpoint
from weightlab.provenance import provenance
from weightlab.repair import RepairSettings, run_experiment
from weightlab.runtime import configure, resolve_device
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    params, out = snakemake.params, Path(snakemake.output[0])
    configure(snakemake.threads)
    device = resolve_device(params.device)
    test = dataset_from_arrays(read_npz(snakemake.input.images)).test
    model, payload = load_checkpoint(snakemake.input.checkpoint, device)
    edit_set = EditSet.from_json(read_json(snakemake.input.editset))
    settings = RepairSettings(
        layer=params.layer, margin=params.margin, param_bound=params.param_bound, solver=params.solver,
        objective=params.objective, time_limit=params.time_limit, threads=snakemake.threads,
    )
    paths = {"edit_set": snakemake.input.editset, "baseline": snakemake.input.checkpoint, "repaired": str(out / "repaired_model.pt")}
    baseline = read_npz(snakemake.input.predictions)["predictions"]
    record, repaired = run_experiment(model, test.images, test.labels, baseline, edit_set, settings, paths, device)
    log.info("%s: successful=%s solver=%s status=%s %s", record["experiment_id"], record["repair_successful"],
             record["solver"], record["solver_status"], record["error_message"])
    out.mkdir(parents=True, exist_ok=True)
    if repaired is not None:
        save_checkpoint(paths["repaired"], repaired, payload["arch"], payload["arch_kwargs"], {"repair": record["experiment_id"]})
    write_json(out / "result.json", {**record, "provenance": provenance(vars(settings), edit_set.seed, ("highspy", "gurobipy"))})
