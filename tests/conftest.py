"""Shared fixtures: copies of the workflow in temporary folders, each study run once on the smoke preset."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "configs", "rules", "workflow_scripts", "schemas", "envs", "report", "profiles")


@functools.lru_cache(maxsize=1)
def _default_config() -> dict:
    import yaml

    return yaml.load((ROOT / "config.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def default_settings(*keys: str) -> dict:
    """The block of config.yaml at `keys` (e.g. 'rebasin', 'criteria'): the defaults, which live
    there and in the schema only, for tests that build a settings object as a script does."""
    block = copy.deepcopy(_default_config())
    for key in keys:
        block = block[key]
    return block


def lora_settings(**changes):
    """The drift study's LoRA settings of config.yaml, with `changes` (field names of LoraSettings)."""
    import dataclasses

    from weightlab.drift.lora import LoraSettings

    return dataclasses.replace(LoraSettings.from_settings(default_settings("drift")), **changes)


def train_settings(**changes):
    """The drift study's fine-tuning settings of config.yaml, with `changes` (fields of TrainSettings)."""
    import dataclasses

    from weightlab.drift.lora import TrainSettings

    return dataclasses.replace(TrainSettings.from_settings(default_settings("drift")), **changes)


def snakemake(
    workdir: Path, *args: str, configfiles: tuple[str, ...] = ("configs/smoke.yaml",), check: bool = True, timeout: int = 1500,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` with the smoke preset (or `configfiles`) and `env` added to the
    environment; output is returned, not printed."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", *configfiles]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled", **(env or {})}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> count from the 'Job stats' table of a dry run."""
    table = output.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE) if m.group(1) != "total"}


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
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`smoke_study("repair")`: a workflow copy where `snakemake <study>` has completed on the
    smoke preset (run once per study and session; each study's tests wait only for their own)."""
    runs: dict[str, Path] = {}

    def run(study: str) -> Path:
        if study not in runs:
            workdir = copy_workflow(tmp_path_factory.mktemp(f"smoke-{study}") / "workflow")
            snakemake(workdir, study)
            runs[study] = workdir
        return runs[study]

    return run


@pytest.fixture(scope="session")
def lm_backbone_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default packaged LM (SmolLM2-135M-Instruct) converted once per session, as rule
    lm_backbone does; load it with weightlab.lm.backbone.load_backbone(folder). Converting costs
    about 16 CPU s, and a mutation run (benchmarks/mutation.sh) starts one session per mutant: it
    converts once and names the folder in WEIGHTLAB_TEST_BACKBONE, which is then used as it is."""
    from weightlab.lm import model_slug
    from weightlab.lm.backbone import prepare_backbone, read_manifest

    name = "SmolLM2-135M-Instruct"
    given = os.environ.get("WEIGHTLAB_TEST_BACKBONE")
    if given:
        held = read_manifest(given)["name"]  # raises unless prepare_backbone completed there
        if held != name:
            raise AssertionError(f"WEIGHTLAB_TEST_BACKBONE={given} holds {held}, not {name}")
        return Path(given)
    out = tmp_path_factory.mktemp("backbone") / model_slug(name)
    prepare_backbone(name, out)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and much slower on two of a busy machine); a module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def few_block_resamples(monkeypatch: pytest.MonkeyPatch) -> int:
    """The separability study's within-run interval of ρ (grokking.rho_interval, a moving-block
    bootstrap) draws 200 resamples instead of the library's 2000 while the test runs: its code
    path is the library's, each resample costs a Spearman ρ (about 1 ms), and a test asks only
    for properties of the interval (covers ρ, its sign, seeded) that 200 resamples show as
    clearly. Returns the number of resamples."""
    from weightlab.separability import grokking
    from weightlab.stats import block_bootstrap_interval

    n_resamples = 200

    def fewer(*args, **kwargs):
        return block_bootstrap_interval(*args, **{**kwargs, "n_resamples": n_resamples})

    monkeypatch.setattr(grokking, "block_bootstrap_interval", fewer)
    return n_resamples


@pytest.fixture()
def workflow_copy(tmp_path: Path) -> Path:
    """A fresh, un-run copy of the workflow (for dry runs and failure cases)."""
    return copy_workflow(tmp_path / "workflow")


def assert_drawn_png(path: Path, size_inches: tuple[float, float], dpi: int = 150) -> None:
    """`path` is a PNG of a drawn figure: about `size_inches` at `dpi` (io.save_figure's; its tight
    bounding box trims or adds a margin, so within 25%), and not blank: several colours, and at
    least 2% of the pixels differ from the background (the corner pixel's colour)."""
    import matplotlib.image

    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    for measured, inches, what in ((width, size_inches[0], "width"), (height, size_inches[1], "height")):
        assert 0.75 * inches * dpi <= measured <= 1.25 * inches * dpi, f"{path.name}: {what} {measured} px, expected about {inches * dpi:.0f}"
    pixels = image[..., :3].reshape(-1, 3)
    drawn = np.any(np.abs(pixels - pixels[0]) > 0.02, axis=1).mean()
    assert drawn >= 0.02, f"{path.name}: only {drawn:.2%} of the pixels differ from the background"
    assert len(np.unique(np.round(pixels * 255).astype(np.uint8), axis=0)) >= 8, f"{path.name}: fewer than 8 colours"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A test cluster's configuration left by a killed session slows every snakemake call by
    about 10 s (see slurm_harness.clear_interrupted_config): put it back before any test runs."""
    from slurm_harness import clear_interrupted_config

    try:
        clear_interrupted_config()
    except OSError:  # not root, or no /etc/slurm: nothing of ours can be there
        pass
