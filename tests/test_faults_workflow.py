"""Faults on the smoke preset: a damaged or hand-edited derived file stops its rule with one line naming the file and
the fix, no Python traceback on the terminal and no output left; after the repair the re-run matches the clean run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import snakemake
from weightlab.io import read_npz

pytestmark = pytest.mark.workflow


def assert_one_line_failure(result, rule: str, message: str) -> str:
    """The run failed, the terminal holds exactly one weightlab line for `rule` containing `message`, and no traceback."""
    terminal = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in terminal.splitlines() if line.startswith("weightlab error")]
    assert len(lines) == 1 and lines[0].startswith(f"weightlab error in rule {rule}: ") and message in lines[0], terminal[-3000:]
    assert "Traceback" not in terminal and 'File "' not in terminal.replace('in file "', ""), terminal[-3000:]
    return lines[0]


def no_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.is_file() and p.name.startswith("."))


def test_a_damaged_image_archive_is_named_and_the_rebuilt_one_gives_the_clean_result(workflow_copy: Path):
    target, images = "results/rebasin/environments.npz", workflow_copy / "results/data/images.npz"
    snakemake(workflow_copy, target)
    clean = read_npz(workflow_copy / target)
    (workflow_copy / target).unlink()
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 3])  # a copy cut short, a disk that filled up

    result = snakemake(workflow_copy, target, check=False)
    line = assert_one_line_failure(result, "rebasin_environments", "results/data/images.npz is damaged or truncated")
    assert line.endswith("delete it and re-run, Snakemake rebuilds it.")
    assert not (workflow_copy / target).exists() and no_temporaries(workflow_copy / "results") == []

    images.unlink()  # the advice
    snakemake(workflow_copy, target)
    again = read_npz(workflow_copy / target)
    assert clean.keys() == again.keys() and all(np.array_equal(clean[k], again[k]) for k in clean)


def test_a_hand_edited_edit_set_with_a_negative_index_is_refused_not_repaired(smoke_study, tmp_path: Path):
    """A negative index used to be read from the end of the test split and reported as a successful repair."""
    workdir = tmp_path / "workflow"
    shutil.copytree(smoke_study("repair"), workdir, symlinks=True)
    name = sorted(p.stem for p in (workdir / "results/repair/editsets").glob("*.json"))[0]
    editset, run = workdir / f"results/repair/editsets/{name}.json", f"results/repair/runs/{name}"
    clean = json.loads((workdir / run / "result.json").read_text())
    content = json.loads(editset.read_text())
    content["indices"][0] = -1
    editset.write_text(json.dumps(content))

    result = snakemake(workdir, run, check=False)
    assert_one_line_failure(result, "repair_run", f"results/repair/editsets/{name}.json: indices [-1] are outside the test split")
    assert not (workdir / run).exists()

    editset.unlink()  # the advice: Snakemake draws it again
    snakemake(workdir, run)
    again = json.loads((workdir / run / "result.json").read_text())
    varying = {"timestamp", "repair_runtime_seconds", "solver_seconds", "lp_build_seconds", "provenance"}
    assert {k: v for k, v in again.items() if k not in varying} == {k: v for k, v in clean.items() if k not in varying}


def test_a_truncated_checkpoint_is_named_and_retraining_gives_the_clean_alignment(smoke_study, tmp_path: Path):
    """A checkpoint cut short (a copy interrupted, a disk that filled up before this was caught) stops the rule that reads it."""
    import torch

    workflow_copy = tmp_path / "workflow"
    shutil.copytree(smoke_study("rebasin"), workflow_copy, symlinks=True)
    target, match = "results/checkpoints/model_A2_aligned_to_A1.pt", "results/rebasin/alignment/A2_to_A1.json"
    clean_match = json.loads((workflow_copy / match).read_text())
    clean = torch.load(workflow_copy / target, weights_only=True)["state_dict"]
    checkpoint = workflow_copy / "results/checkpoints/model_A1.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:4096])

    result = snakemake(workflow_copy, target, check=False)
    line = assert_one_line_failure(result, "rebasin_align", "checkpoint results/checkpoints/model_A1.pt is damaged or truncated")
    assert line.endswith("delete it and re-run, Snakemake rebuilds it.")
    assert not (workflow_copy / target).exists() and not (workflow_copy / match).exists()
    assert no_temporaries(workflow_copy / "results") == []

    checkpoint.unlink()  # the advice: rule rebasin_train makes it again
    snakemake(workflow_copy, target)
    again = torch.load(workflow_copy / target, weights_only=True)["state_dict"]
    again_match = json.loads((workflow_copy / match).read_text())
    assert again_match["objective_history"] == clean_match["objective_history"]
    assert clean.keys() == again.keys() and all(torch.equal(clean[k], again[k]) for k in clean)
