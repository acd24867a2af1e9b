"""The LM backbone, text and geometry-retrofit rules on the smoke preset (one run of the `retrofit` target)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import planned_jobs, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def smoke_run(smoke_study):
    return smoke_study("retrofit")


RUN_FILES = {"standard": "standard", "gram_only": "gram", "geometry": "geometry"}


def read(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def test_smoke_run_writes_every_retrofit_file(smoke_run: Path):
    expected = [f"results/retrofit/{run}.json" for run in RUN_FILES] + [
        "results/retrofit/summary.json", "results/retrofit/trajectories.png", "results/retrofit/baseline.json",
        "results/lm/text.json", "results/lm/models/SmolLM2-135M-Instruct/backbone.json",
        "results/lm/models/SmolLM2-135M-Instruct/model.safetensors",
    ]
    assert [f for f in expected if not (smoke_run / f).is_file()] == []


@pytest.mark.parametrize("run, method", RUN_FILES.items())
def test_each_method_file_has_initial_final_and_trajectory(smoke_run: Path, run: str, method: str):
    result = read(smoke_run, f"results/retrofit/{run}.json")
    baseline = read(smoke_run, "results/retrofit/baseline.json")["initial"]
    assert result["method"] == method and result["run"] == run
    trajectory = result["trajectory"]
    assert trajectory["steps"] == [0, 2]  # smoke: 2 steps, measured every 2
    for key in ("conditioning", "activation_conditioning", "perplexity", "loss"):
        assert len(trajectory[key]) == 2 and trajectory[key][0] == baseline[key] == result["initial"][key]
        assert trajectory[key][-1] == result["final"][key]
    assert result["final"]["perplexity"] == pytest.approx(math.exp(result["final"]["loss"]), rel=1e-6)
    assert result["transports"] == (1 if method == "geometry" else 0)  # glt_interval 2 in 2 steps
    block = result["provenance"]
    train = block["config"]["train"]  # the method's retrofit.train block (design.method_settings)
    assert block["seed"] == 0 and train["num_steps"] == 2 and block["versions"]["transformers"]
    assert (train["gram_weight"] != 0) == (method != "standard")  # what a method does not use is 0


def test_summary_compares_every_method_with_the_baseline(smoke_run: Path):
    summary = read(smoke_run, "results/retrofit/summary.json")
    baseline = read(smoke_run, "results/retrofit/baseline.json")["initial"]
    assert set(summary["runs"]) == set(RUN_FILES) and summary["baseline"]["perplexity"] == baseline["perplexity"]
    for run, row in summary["runs"].items():
        final = read(smoke_run, f"results/retrofit/{run}.json")["final"]
        assert row["final_conditioning"] == final["conditioning"]
        assert row["perplexity_change"] == pytest.approx(final["perplexity"] / baseline["perplexity"] - 1)
    assert "provenance" in summary


def test_criteria_gate_the_original_expectations_on_the_training_working(smoke_run: Path):
    summary, document = read(smoke_run, "results/retrofit/summary.json"), read(smoke_run, "results/retrofit/criteria.json")
    assert summary["criteria"]["criteria"] == document["criteria"] and document["verdict"] in ("held", "not held", "not testable")
    records = {c["id"]: c for c in document["criteria"]}
    standard, base = summary["runs"]["standard"]["final_perplexity"], summary["baseline"]["perplexity"]
    assert records["standard_lowers_validation_loss"]["verdict"] == ("pass" if standard < base else "fail")
    assert records["gram_lowers_conditioning"]["value"] == summary["runs"]["gram_only"]["conditioning_change"]
    if records["standard_lowers_validation_loss"]["verdict"] != "pass":
        assert all(c["verdict"] == "not_testable" for c in document["criteria"] if c["kind"] == "expectation")


def test_text_splits_share_no_document(smoke_run: Path):
    corpus = read(smoke_run, "results/lm/text.json")
    keys = lambda split, field: {d[field] if field == "id" else " ".join(d["text"].lower().split()) for d in corpus[split]}  # noqa: E731
    assert not keys("train", "id") & keys("validation", "id")
    assert not keys("train", "text") & keys("validation", "text")
    assert corpus["sources"]["news"]["validation"] > 0 and "licence" in corpus["sources"]["news"]


def test_compare_cli_prints_the_table(smoke_run: Path):
    result = subprocess.run([sys.executable, "-m", "weightlab.retrofit", "compare", str(smoke_run / "results/retrofit")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in ("baseline", *RUN_FILES, "FFN Gram cond", "val PPL"))


def test_gram_weight_change_reruns_only_the_methods_that_use_it(smoke_run: Path):
    (smoke_run / "configs/smoke_gram.yaml").write_text("retrofit:\n  train:\n    gram_weight: 0.02\n")
    result = snakemake(smoke_run, "-n", "results/retrofit/summary.json", configfiles=("configs/smoke.yaml", "configs/smoke_gram.yaml"))
    jobs = planned_jobs(result.stdout)
    assert jobs.get("retrofit_train") == 2 and jobs.get("retrofit_summary") == 1  # gram_only and geometry, not standard
    assert not {"lm_backbone", "lm_text", "retrofit_baseline"} & set(jobs)
    assert "output: results/retrofit/standard.json" not in result.stdout


def test_num_steps_change_reruns_every_method_but_not_the_baseline(smoke_run: Path):
    (smoke_run / "configs/smoke_steps.yaml").write_text("retrofit:\n  train:\n    num_steps: 3\n")
    result = snakemake(smoke_run, "-n", "retrofit", configfiles=("configs/smoke.yaml", "configs/smoke_steps.yaml"))
    jobs = planned_jobs(result.stdout)
    assert jobs.get("retrofit_train") == 3 and jobs.get("retrofit_summary") == 1 and jobs.get("retrofit") == 1
    assert not {"lm_backbone", "lm_text", "retrofit_baseline"} & set(jobs)
