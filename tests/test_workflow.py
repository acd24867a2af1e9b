"""The workflow as a whole: presets dry-run, targets build what they name, parsing stays light, bad input stops cleanly."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import planned_jobs, snakemake

pytestmark = pytest.mark.workflow

# rules a study's target may plan besides its own (`<study>_*`): the shared data and LM rules
SHARED_RULES = {
    "rebasin": {"data_images"}, "repair": {"data_images"}, "retrofit": {"lm_backbone", "lm_text"}, "separability": {"lm_backbone"},
    "drift": {"lm_backbone"},
}


@pytest.mark.parametrize("configfiles", [("configs/smoke.yaml",), ("config.yaml",), ("configs/paper.yaml",)], ids=["smoke", "default", "paper"])
def test_dry_run_of_every_preset(workflow_copy, configfiles):
    result = snakemake(workflow_copy, "-n", "all", configfiles=configfiles)
    jobs = planned_jobs(result.stdout)
    assert jobs["rebasin_train"] == 4 and jobs["rebasin_interpolate"] == 4


def test_one_target_builds_only_what_it_needs(workflow_copy):
    jobs = planned_jobs(snakemake(workflow_copy, "-n", "results/barriers.json").stdout)
    assert jobs["rebasin_barriers"] == 1 and jobs["rebasin_train"] == 4
    assert not {"rebasin_preview", "rebasin_figures", "rebasin_summary", "rebasin_verify", "all"} & set(jobs)


@pytest.mark.parametrize("study", sorted(SHARED_RULES))
def test_a_study_target_plans_only_that_study(workflow_copy, study):
    jobs = set(planned_jobs(snakemake(workflow_copy, "-n", study).stdout))
    assert study in jobs and any(job.startswith(f"{study}_") for job in jobs)
    foreign = {job for job in jobs - {study} - SHARED_RULES[study] if not job.startswith(f"{study}_")}
    assert not foreign, f"target {study} plans rules of other studies: {sorted(foreign)}"


def test_all_is_the_union_of_the_study_targets(workflow_copy):
    every = planned_jobs(snakemake(workflow_copy, "-n", "all").stdout)
    for study in SHARED_RULES:
        planned = planned_jobs(snakemake(workflow_copy, "-n", study).stdout)
        for rule, count in planned.items():
            assert rule == study or every.get(rule) == count, (study, rule)


def test_parsing_the_workflow_imports_neither_torch_nor_transformers(workflow_copy):
    """`-X importtime` lists every module the snakemake process imports while it parses and plans."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--cores", "2", "all"],
                            cwd=workflow_copy, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported and "weightlab" in imported
    assert not {"torch", "transformers", "transformer_lens"} & imported


def test_more_cores_than_the_machine_schedule_as_the_machine(workflow_copy):
    """--cores 64 on a smaller machine gives each job at most the machine's CPUs, as --cores <cpus> would
    (rules asking for 64 threads: the default of one thread a job would not show the cap)."""
    cpus = len(os.sched_getaffinity(0))
    (workflow_copy / "many_threads.yaml").write_text("threads: {train: 64, eval: 64}\n")
    wide, fitted = (snakemake(workflow_copy, "-n", "--cores", str(n), "results/checkpoints/model_A1.pt",
                              configfiles=("configs/smoke.yaml", "many_threads.yaml")).stdout for n in (64, cpus))
    threads = [int(t) for t in re.findall(r"^\s+threads: (\d+)", wide, re.MULTILINE)]
    assert threads and max(threads) <= cpus
    assert re.findall(r"threads: \d+", wide) == re.findall(r"threads: \d+", fitted)


def test_missing_data_stops_with_install_advice_and_no_output(workflow_copy: Path, tmp_path: Path):
    (workflow_copy / "configs/nodata.yaml").write_text(f"data:\n  root: {tmp_path / 'empty'}\n")
    result = snakemake(workflow_copy, "results/data/images.npz", configfiles=("configs/smoke.yaml", "configs/nodata.yaml"), check=False)
    assert result.returncode != 0
    assert "apt-get install dataset-fashion-mnist" in result.stdout + result.stderr
    assert not (workflow_copy / "results/data/images.npz").exists()


@pytest.mark.parametrize("graph", ["--dag", "--rulegraph"])
def test_dag_and_rulegraph_render(workflow_copy: Path, graph: str):
    import shutil
    import subprocess

    dot_source = snakemake(workflow_copy, "all", graph).stdout
    assert dot_source.lstrip().startswith("digraph") and "rebasin_interpolate" in dot_source
    if shutil.which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=dot_source, capture_output=True, text=True, check=True).stdout
        assert "<svg" in svg and "rebasin_barriers" in svg


def test_lint_is_clean(workflow_copy):
    result = snakemake(workflow_copy, "--lint", check=False)
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr, result.stdout[-3000:]
