"""Shared fixtures: a copy of the workflow in a temporary folder, run once on the smoke preset."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "configs", "rules", "workflow_scripts", "schemas", "envs", "report", "profiles")


def snakemake(
    workdir: Path, *args: str, configfiles: tuple[str, ...] = ("configs/smoke.yaml",), check: bool = True, timeout: int = 1500,
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` with the smoke preset (or `configfiles`); output is returned, not printed."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", *configfiles]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def copy_workflow(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.exists():
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow copy where `snakemake ... all` has completed on the smoke preset."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke") / "workflow")
    snakemake(workdir, "all")
    return workdir


@pytest.fixture()
def workflow_copy(tmp_path: Path) -> Path:
    """A fresh, un-run copy of the workflow (for dry runs and failure cases)."""
    return copy_workflow(tmp_path / "workflow")
