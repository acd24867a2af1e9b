"""Repair one layer on one edit set by an LP, evaluate the result; a failed solve is a result too."""
from pathlib import Path

from weightlab.checkpoints import load_checkpoint, save_checkpoint
from weightlab.config import settings_dataclass
from weightlab.io import read_npz, write_json
from weightlab.provenance import provenance
from weightlab.repair.core import RepairSettings
from weightlab.repair.editsets import read_edit_set
from weightlab.repair.experiment import RUN_RECORD, run_experiment, run_paths
from weightlab.repair.models import ARCHITECTURES
from weightlab.repair.solvers import SOLVER_PACKAGES
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    params, out = step.params, Path(step.output[0])
    device = step.device
    test = dataset_from_arrays(read_npz(step.input.images)).test
    model, payload = load_checkpoint(step.input.checkpoint, ARCHITECTURES, device)
    baseline = read_npz(step.input.predictions, keys=("predictions",))["predictions"]
    edit_set = read_edit_set(step.input.editset, test.labels, baseline)
    settings = settings_dataclass(RepairSettings, {**params.lp, "threads": step.threads}, "repair.lp")
    paths = run_paths(step.input.editset, step.input.checkpoint, out)
    record, repaired = run_experiment(model, test.images, test.labels, baseline, edit_set, settings, paths, device)
    step.log.info("%s: successful=%s solver=%s status=%s %s", record["experiment_id"], record["repair_successful"],
                  record["solver"], record["solver_status"], record["error_message"])
    out.mkdir(parents=True, exist_ok=True)
    if repaired is not None:
        save_checkpoint(paths["repaired"], repaired, payload["arch"], payload["arch_kwargs"], {"repair": record["experiment_id"]})
    write_json(out / RUN_RECORD, {**record, "provenance": provenance(vars(settings), edit_set.seed, SOLVER_PACKAGES)})
