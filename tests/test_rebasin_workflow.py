"""The Re-Basin study on the smoke preset: files, checkpoints, report, no-op and incremental re-runs."""

import json
from pathlib import Path

import pytest
import torch

from conftest import planned_jobs, snakemake
from weightlab.checkpoints import load_checkpoint
from weightlab.rebasin.models import ARCHITECTURES

pytestmark = pytest.mark.workflow

REBASIN_FILES = [
    "results/barriers.json",
    "results/rebasin/environments_preview.png",
    "results/rebasin/srs.json",
    "results/rebasin/summary.json",
    "results/rebasin/final_report.json",
    "results/rebasin/criteria.json",
    "results/rebasin/figures/training_curves.png",
    "results/rebasin/figures/barrier_comparison.png",
    "results/rebasin/figures/interpolation_paths.png",
    "results/rebasin/figures/summary.png",
    "results/checkpoints/model_A1.pt",
    "results/checkpoints/model_A2.pt",
    "results/checkpoints/model_R1.pt",
    "results/checkpoints/model_R2.pt",
    "results/checkpoints/model_A2_aligned_to_A1.pt",
    "results/checkpoints/model_R2_aligned_to_R1.pt",
    "results/checkpoints/model_R1_aligned_to_A1.pt",
    "results/checkpoints/model_R2_aligned_to_A2.pt",
]


@pytest.fixture(scope="module")
def smoke_run(smoke_study) -> Path:
    return smoke_study("rebasin")


def test_smoke_run_writes_every_rebasin_file(smoke_run: Path):
    missing = [f for f in REBASIN_FILES if not (smoke_run / f).is_file()]
    assert not missing


def test_barriers_json_has_every_pair_and_field(smoke_run: Path):
    barriers = json.loads((smoke_run / "results/barriers.json").read_text())
    assert set(barriers["pairs"]) == {"A1-A2", "R1-R2", "A1-R1", "A2-R2"}
    for key, pair in barriers["pairs"].items():
        assert pair["kind"] == ("same" if key[0] == key[3] else "different")
        for method in ("naive", "aligned"):
            entry = pair[method]
            n = len(entry["curves"]["alpha"])
            assert n == 5 and len(entry["loss"]) == n and len(entry["accuracy"]) == n and len(entry["srs"]) == n
    assert barriers["provenance"]["config"]["interpolation"]["num_alphas"] == 5


def test_naive_and_aligned_paths_meet_at_both_endpoints(smoke_run: Path):
    """At alpha 0 both paths are the reference; at 1 the aligned model is a permutation of the
    other, so (after the same BN reset) it must score exactly as the naive endpoint does."""
    pairs = json.loads((smoke_run / "results/barriers.json").read_text())["pairs"]
    for key, pair in pairs.items():
        naive, aligned = pair["naive"]["curves"], pair["aligned"]["curves"]
        for metric in ("A_loss", "B_loss", "none_loss", "srs"):
            for end in (0, -1):
                assert aligned[metric][end] == pytest.approx(naive[metric][end], abs=1e-4), (key, metric, end)
        for metric in ("A_accuracy", "none_accuracy"):
            assert aligned[metric][0] == naive[metric][0] and abs(aligned[metric][-1] - naive[metric][-1]) <= 0.004, (key, metric)


def test_every_json_result_carries_provenance(smoke_run: Path):
    files = [smoke_run / "results/barriers.json", *sorted((smoke_run / "results/rebasin").rglob("*.json"))]
    assert len(files) >= 10
    for path in files:
        block = json.loads(path.read_text())["provenance"]
        assert {"config", "seed", "git_commit", "versions"} <= set(block), path


def test_aligned_checkpoint_is_the_same_function(smoke_run: Path):
    original, _ = load_checkpoint(smoke_run / "results/checkpoints/model_R2.pt", ARCHITECTURES)
    aligned, payload = load_checkpoint(smoke_run / "results/checkpoints/model_R2_aligned_to_R1.pt", ARCHITECTURES)
    assert payload["metadata"]["aligned_to"] == "R1"
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), original(x), rtol=1e-4, atol=1e-4)
    assert not torch.equal(aligned.convs[1].weight, original.convs[1].weight)


def test_final_report_states_each_expected_result_with_the_measured_numbers(smoke_run: Path):
    report = json.loads((smoke_run / "results/rebasin/final_report.json").read_text())
    srs = json.loads((smoke_run / "results/rebasin/srs.json").read_text())["models"]
    barriers = json.loads((smoke_run / "results/barriers.json").read_text())["pairs"]
    criteria = {c["id"]: c for c in report["criteria"]}
    kinds = [c["kind"] for c in report["criteria"]]
    assert kinds.count("expectation") == 7 and kinds.count("precondition") == 3
    assert all({"statement", "source", "threshold", "value", "interval", "verdict", "reason", "depends_on"} <= set(c)
               for c in criteria.values())
    assert criteria["spurious_models_large_ood_drop"]["value"] == {
        **{m: srs[m]["ood_drop"] for m in ("A1", "A2")}, "mean": pytest.approx((srs["A1"]["ood_drop"] + srs["A2"]["ood_drop"]) / 2)}
    assert criteria["models_learn_the_task"]["value"] == {m: srs[m]["id_accuracy"] for m in srs}
    same = criteria["same_mechanism_low_barrier_after_rebasin"]["value"]
    assert {p: same[p] for p in ("A1-A2", "R1-R2")} == {p: barriers[p]["aligned"]["loss_barrier"] for p in ("A1-A2", "R1-R2")}
    exact = criteria["alignment_preserves_function"]
    assert exact["verdict"] == "pass" and max(exact["value"].values()) < 1e-4  # weight matching permutes: the function is kept
    if criteria["models_learn_the_task"]["verdict"] != "pass":  # smoke models train for one epoch
        assert all(criteria[e]["verdict"] == "not_testable" for e in criteria if criteria[e]["kind"] == "expectation")
        assert report["verdict"] == "not testable" and "models_learn_the_task" in report["reason"]
    assert report["verdict"] in ("held", "not held", "not testable")
    assert json.loads((smoke_run / "results/rebasin/criteria.json").read_text())["criteria"] == report["criteria"]
    assert report["thresholds"]["spurious_ood_drop_min"] == 0.2 and report["thresholds"]["robust_srs"] == [0.05, 0.1]


def test_interpolation_change_reruns_only_downstream(smoke_run: Path):
    (smoke_run / "configs/smoke_alphas.yaml").write_text("rebasin:\n  interpolation:\n    num_alphas: 3\n")
    result = snakemake(smoke_run, "-n", "rebasin", configfiles=("configs/smoke.yaml", "configs/smoke_alphas.yaml"))
    jobs = planned_jobs(result.stdout)
    assert jobs.get("rebasin_interpolate") == 4 and jobs.get("rebasin_barriers") == 1
    assert not {"rebasin_train", "data_images", "rebasin_environments", "rebasin_align", "rebasin_verify"} & set(jobs)


def test_html_report_has_every_rebasin_figure(smoke_run: Path):
    snakemake(smoke_run, "--report", "results/report.html", "rebasin")
    report = smoke_run / "results/report.html"
    assert report.stat().st_size > 10_000
    # the report is a self-contained page; figure names appear in its embedded data
    text = report.read_text(errors="ignore")
    for figure in ("environments_preview.png", "training_curves.png", "barrier_comparison.png", "interpolation_paths.png", "summary.png"):
        assert figure in text, figure


def test_readme_tables_are_printed_from_the_results(smoke_run: Path):
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/readme_figures.py"), "--results", str(smoke_run / "results")],
                         capture_output=True, text=True, check=True).stdout
    srs = json.loads((smoke_run / "results/rebasin/srs.json").read_text())["models"]
    assert f"| A1 | {srs['A1']['id_accuracy']:.3f} |" in out and "| A1–A2 | same |" in out and "verdict: " in out
    assert "| rebasin | not" in out or "| rebasin | held |" in out


def test_width_sweep_runs_every_pair_at_every_width_and_states_its_expectation(smoke_run: Path, tmp_path: Path):
    """`snakemake rebasin_width` (not part of `all`): multiplier 1 is the main run; the other
    widths train, align and interpolate again; width_sweep.json holds every pair at every width.
    Run in a copy of the smoke run, so the shared one keeps only what `all` makes (the report test)."""
    import shutil

    assert not any(rule.startswith("rebasin_width") for rule in planned_jobs(snakemake(smoke_run, "-n", "all", check=False).stdout))
    smoke_run = Path(shutil.copytree(smoke_run, tmp_path / "workflow", symlinks=True))
    planned = planned_jobs(snakemake(smoke_run, "-n", "rebasin_width").stdout)
    assert "rebasin_train" not in planned and planned["rebasin_width_train"] == 4  # multiplier 1 is the main run's
    snakemake(smoke_run, "rebasin_width")
    sweep = json.loads((smoke_run / "results/rebasin/width_sweep.json").read_text())
    assert sweep["multipliers"] == [0.5, 1.0] and sweep["models"]["0.5"]["width"] == 4 and sweep["models"]["1"]["width"] == 8
    assert len(sweep["rows"]) == 2 * 4 * 2  # widths x pairs x (naive, aligned)
    barriers = json.loads((smoke_run / "results/barriers.json").read_text())["pairs"]
    main = {r["pair"]: r["loss_barrier"] for r in sweep["rows"] if r["multiplier"] == 1.0 and r["method"] == "aligned"}
    assert main == pytest.approx({key: pair["aligned"]["loss_barrier"] for key, pair in barriers.items()})
    assert set(sweep["summary"]["0.5"]) == {"same/naive", "same/aligned", "different/naive", "different/aligned"}
    ids = [c["id"] for c in sweep["criteria"]]
    assert ids[-2:] == ["same_mechanism_barrier_decreases_with_width", "different_mechanism_stays_above_at_every_width"]
    assert sweep["verdict"] in ("held", "not held", "not testable") and sweep["reason"]
    assert (smoke_run / "results/rebasin/figures/width_sweep.png").stat().st_size > 10_000
    assert (smoke_run / "results/checkpoints/model_A1.pt").is_file() and (smoke_run / "results/rebasin/width/x0.5/model_A1.pt").is_file()
