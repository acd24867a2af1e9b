"""The provable-repair study on the smoke preset: files, columns, and what a repair promises."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import assert_drawn_png, planned_jobs, snakemake
from weightlab.checkpoints import load_checkpoint
from weightlab.repair.editsets import experiment_names
from weightlab.repair.experiment import COLUMNS
from weightlab.repair.models import ARCHITECTURES

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def smoke_run(smoke_study):
    return smoke_study("repair")


def smoke_config(workdir):
    """The repair section as the smoke run saw it: config.yaml with configs/smoke.yaml over it."""
    base = yaml.safe_load((workdir / "config.yaml").read_text())["repair"]
    smoke = yaml.safe_load((workdir / "configs" / "smoke.yaml").read_text()).get("repair", {})
    return {**base, **smoke}


def test_grid_csv_has_the_columns_and_one_row_per_configuration(smoke_run):
    table = pd.read_csv(smoke_run / "results/repair/experiment_data.csv")
    assert list(table.columns) == list(COLUMNS)
    config = smoke_config(smoke_run)
    classes = len(config["target_classes"])
    expected = sum(len(config["set_sizes"]) * (1 if t == "misclassified" else classes) for t in config["set_types"])
    assert len(table) == expected
    assert set(table["edit_set_sizing_strategy"]) == {"flexible"}
    assert (table["actual_repair_set_size"] <= table["requested_repair_set_size"]).all()
    assert set(table["solver"]) <= {"gurobi", "highs"}


def test_successful_repairs_classify_every_edit_image_correctly(smoke_run):
    table = pd.read_csv(smoke_run / "results/repair/experiment_data.csv")
    base, _ = load_checkpoint(smoke_run / "results/repair/alexnet_base.pt", ARCHITECTURES)
    for row in table.itertuples():
        edit_set = json.loads((smoke_run / row.edit_set_path).read_text())
        assert edit_set["actual_size"] == row.actual_repair_set_size == len(edit_set["indices"])
        if not row.repair_successful:
            assert isinstance(row.error_message, str) and row.error_message
            continue
        assert row.repaired_accuracy_edit_set == 1.0
        repaired, _ = load_checkpoint(smoke_run / row.repaired_model_path, ARCHITECTURES)
        change = (repaired.classifier.fc3.weight - base.classifier.fc3.weight).abs().max().item()
        assert 0 < change <= row.param_bound + 1e-5
        assert torch.equal(repaired.classifier.fc1.weight, base.classifier.fc1.weight)
        run = json.loads((smoke_run / row.repaired_model_path).with_name("result.json").read_text())
        assert run["edit_min_margin"] >= row.margin - 1e-3
        assert run["edit_min_margin_full_net"] == pytest.approx(run["edit_min_margin"], abs=1e-4)  # head and whole net agree
        if run["lp_objective_kind"] == "linf":
            assert run["objective"] == pytest.approx(run["delta_linf"], abs=1e-6)
        else:  # the original's norm also counts the logit changes and the mean, so it exceeds the largest parameter change
            assert run["lp_objective_kind"] == "linf+l1_normalized" and run["objective"] > run["delta_linf"]
        assert "provenance" in run and run["solver_choice"]


def test_criteria_gate_the_expectation_on_the_base_accuracy_and_the_whole_network_re_check(smoke_run):
    document = json.loads((smoke_run / "results/repair/criteria.json").read_text())
    summary = json.loads((smoke_run / "results/repair/summary.json").read_text())
    assert summary["criteria"]["criteria"] == document["criteria"] and document["verdict"] in ("held", "not held", "not testable")
    records = {c["id"]: c for c in document["criteria"]}
    assert records["base_model_learns"]["value"] == summary["base"]["test_accuracy"]
    verified = records["repairs_verified_by_forward_pass"]
    for run in summary["records"]:  # each successful run was re-checked through the whole network
        if run["repair_successful"]:
            assert verified["value"][run["experiment_id"]] == run["edit_min_margin_full_net"]
            assert run["edit_accuracy_full_net"] == 1.0
    assert records["feasible_edit_sets_fixed"]["depends_on"] == ["base_model_learns", "repairs_verified_by_forward_pass"]
    if records["base_model_learns"]["verdict"] == "fail":
        assert records["feasible_edit_sets_fixed"]["verdict"] == "not_testable" and document["verdict"] == "not testable"


def test_base_evaluation_and_figures(smoke_run):
    evaluation = json.loads((smoke_run / "results/repair/base_evaluation.json").read_text())
    assert "provenance" in evaluation
    counts = np.array(evaluation["confusion_matrix"])
    assert counts.sum() == evaluation["num_test"]
    assert np.trace(counts) / counts.sum() == pytest.approx(evaluation["test_accuracy"])
    assert len(evaluation["per_class_accuracy"]) == len(evaluation["classes"])
    for name, inches in (("confusion_matrix", (6.5, 5.5)), ("accuracy_vs_size", (7, 4.5)), ("runtime_vs_size", (7, 4.5)), ("drawdown", (7, 4.5))):
        assert_drawn_png(smoke_run / f"results/repair/figures/{name}.png", inches)


def test_a_repair_setting_reruns_only_the_repairs_and_what_follows(smoke_run):
    (smoke_run / "configs/smoke_margin.yaml").write_text("repair:\n  lp:\n    margin: 1.5\n")
    result = snakemake(smoke_run, "-n", "repair", configfiles=("configs/smoke.yaml", "configs/smoke_margin.yaml"))
    jobs = planned_jobs(result.stdout)
    config = smoke_config(smoke_run)
    runs = len(experiment_names(config["set_types"], config["target_classes"], config["set_sizes"]))
    assert jobs.get("repair_run") == runs and jobs.get("repair_grid") == 1 and jobs.get("repair_figures") == 1
    assert not {"repair_train", "repair_evaluate_base", "repair_editset", "data_images"} & set(jobs)


def test_a_library_change_reruns_only_the_rules_whose_scripts_run_it(smoke_run, tmp_path):
    """Snakemake sees a script's own edits; the `library` param (weightlab.sourcecode) makes it see
    the library's. The workflow is parsed against a copy of the library (PYTHONPATH): unchanged,
    nothing re-runs; after an edit of the LP module the repairs and what follows re-run, but not
    training or the edit sets; an edit of a plumbing module (atomic writes) re-runs nothing."""
    import weightlab

    src = tmp_path / "src"
    shutil.copytree(Path(weightlab.__file__).parent, src / "weightlab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(src)}

    def plan() -> subprocess.CompletedProcess:
        return snakemake(smoke_run, "-n", "repair", env=env)

    assert "Nothing to be done" in plan().stdout
    lp = src / "weightlab" / "repair" / "lp.py"
    original = lp.read_text()
    lp.write_text(original + "\n# an edit of the LP module\n")
    jobs = planned_jobs(plan().stdout)
    config = smoke_config(smoke_run)
    runs = len(experiment_names(config["set_types"], config["target_classes"], config["set_sizes"]))
    assert jobs.get("repair_run") == runs and {"repair_grid", "repair_figures", "repair_tables"} <= set(jobs)
    assert not {"repair_train", "repair_evaluate_base", "repair_editset", "data_images"} & set(jobs)
    lp.write_text(original)
    io = src / "weightlab" / "io.py"
    io.write_text(io.read_text() + "\n# a plumbing edit\n")
    assert "Nothing to be done" in plan().stdout
