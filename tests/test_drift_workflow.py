"""The safety-neuron drift study on the smoke preset (one run of the `drift` target): every declared
output, group files of valid ids, matched controls, the drift log, the verdict; no-op and
incremental re-runs; the paper preset's DAG without the alignment rule."""

import json
import math
import re
from pathlib import Path

import pytest

from conftest import assert_drawn_png, planned_jobs, snakemake
from weightlab.drift.design import (
    ALIGNED_MODEL,
    ALIGNMENT,
    DATA,
    DRIFT_LOG,
    FINAL_DRIFT,
    FINETUNE,
    GROUP_SUMMARY,
    GROUPS,
    SAFETY_GROUPS,
    SNIP_SETS,
    STATISTICS,
    all_outputs,
    group_path,
    snip_scores_path,
)
from weightlab.drift.stats import classify

pytestmark = pytest.mark.workflow

MEASURES = ("cosine", "cosine_distance", "l2", "relative")
STATS = ("mean", "std", "median", "q05", "q25", "q75", "q95")
TRACKED = (*GROUPS, *(f"random_matched:{g}" for g in SAFETY_GROUPS))
STUDY_RULES = {"drift_data", "drift_align", "drift_snip", "drift_groups", "drift_finetune", "drift_analysis", "drift_tables"}


@pytest.fixture(scope="module")
def smoke_run(smoke_study):
    return smoke_study("drift")


def read(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def groups(root: Path) -> dict[str, dict[str, list[int]]]:
    return {g: read(root, group_path(g))["neurons"] for g in GROUPS}


def module_sizes(model_folder: Path) -> dict[str, int]:
    """Output rows of every projection of the aligned model, read from the safetensors header."""
    header = model_folder / "model.safetensors"
    with open(header, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        tensors = json.loads(handle.read(length))
    pattern = re.compile(r"^(model\.layers\.\d+\.\w+\.\w+_proj)\.weight$")
    return {m.group(1): info["shape"][0] for name, info in tensors.items() if (m := pattern.match(name))}


def test_smoke_run_writes_every_declared_output(smoke_run: Path):
    expected = [*all_outputs(), DATA, ALIGNMENT, FINETUNE, FINAL_DRIFT, f"{ALIGNED_MODEL}/backbone.json",
                f"{ALIGNED_MODEL}/model.safetensors"]
    assert [f for f in expected if not (smoke_run / f).is_file()] == []
    for snip_set in SNIP_SETS:  # temporary: removed once the groups exist
        assert not (smoke_run / snip_scores_path(snip_set)).exists()
    for name, inches in (("drift_timeseries", (15, 4)), ("final_drift_distributions", (15, 4.5)), ("refusal", (6, 4))):
        assert_drawn_png(smoke_run / f"results/drift/figures/{name}.png", inches)


def test_group_files_hold_valid_ids_only(smoke_run: Path):
    sizes = module_sizes(smoke_run / ALIGNED_MODEL)
    assert len(sizes) == 7 * 30  # SmolLM2-135M: 30 decoder layers, 7 projections each
    summary = read(smoke_run, GROUP_SUMMARY)
    assert summary["total_neurons"] == sum(sizes.values()) and summary["modules"] == len(sizes)
    for group in GROUPS:
        content = read(smoke_run, group_path(group))
        assert set(content) == {"group", "count", "neurons"} and content["group"] == group
        assert content["count"] == sum(map(len, content["neurons"].values())) == summary["counts"][group] > 0
        for module, rows in content["neurons"].items():
            assert module in sizes, (group, module)
            assert all(isinstance(r, int) and 0 <= r < sizes[module] for r in rows), (group, module)
            assert len(set(rows)) == len(rows), (group, module)
    found = groups(smoke_run)
    for safety in SAFETY_GROUPS:  # the matched control is drawn outside both safety groups
        assert not any(set(rows) & set(found[safety].get(m, [])) for m, rows in found["random_matched"].items())


def test_random_matched_matches_the_safety_groups_per_module_counts(smoke_run: Path):
    found = groups(smoke_run)
    modules = set(found["random_matched"]) | {m for g in SAFETY_GROUPS for m in found[g]}
    for module in modules:
        wanted = max(len(found[g].get(module, [])) for g in SAFETY_GROUPS)
        assert len(found["random_matched"].get(module, [])) == wanted, module
    # each safety group's control (the prefix of random_matched) has exactly its counts
    final = next(json.loads(line) for line in reversed((smoke_run / DRIFT_LOG).read_text().splitlines()))
    for safety in SAFETY_GROUPS:
        assert final["groups"][f"random_matched:{safety}"]["relative"]["n"] == final["groups"][safety]["relative"]["n"]


def test_drift_log_lines_have_every_group_and_measure(smoke_run: Path):
    records = [json.loads(line) for line in (smoke_run / DRIFT_LOG).read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]  # smoke: 2 steps, drift logged every step
    for record in records:
        assert set(record["groups"]) == set(TRACKED), record["step"]
        for group, measures in record["groups"].items():
            assert set(MEASURES) <= set(measures), group
            for measure in MEASURES:
                assert all(math.isfinite(measures[measure][s]) for s in STATS), (record["step"], group, measure)
    assert all(records[0]["groups"][g]["relative"]["max"] == 0 for g in TRACKED)  # nothing moved at step 0
    assert all(records[-1]["groups"][g]["relative"]["median"] > 0 for g in TRACKED)
    assert [r["step"] for r in records if "refusal" in r] == [0, 2]  # refusal_interval 0: start and end
    assert set(records[-1]["refusal"]) == {"harmful", "benign"}


def test_statistical_results_have_the_verdict_thresholds_d_ci_and_provenance(smoke_run: Path):
    result = read(smoke_run, STATISTICS)
    assert set(result["verdict_by_group"]) == set(SAFETY_GROUPS)
    for group in SAFETY_GROUPS:  # each group's verdict is its primary comparison read against the thresholds
        primary = result["comparisons"][group][f"random_matched:{group}"]["relative"]
        assert result["verdict_by_group"][group] == classify(primary["drift_d"], primary["drift_ci"], 0.5, 0.2)
    verdicts = set(result["verdict_by_group"].values())
    assert result["verdict"] == (verdicts.pop() if len(verdicts) == 1 else "mixed")
    assert result["primary_measure"] == "relative"
    assert result["thresholds"] == {"h1_min_d": 0.5, "h2_max_d": 0.2, "confidence": 0.95, "n_boot": 200}
    for group in SAFETY_GROUPS:
        for control in (f"random_matched:{group}", "random"):
            for measure in ("cosine", "l2", "relative"):
                comparison = result["comparisons"][group][control][measure]
                low, high = comparison["drift_ci"]
                assert math.isfinite(comparison["drift_d"]) and low <= high, (group, control, measure)
    assert set(result["refusal"]) == {"before_alignment", "after_alignment", "start_of_finetuning", "after_finetuning"}
    block = result["provenance"]
    assert block["seed"] == 0 and block["config"]["max_steps"] == 2 and block["config"]["snip_top_k"] == 0.01
    assert block["config"]["model"] == "SmolLM2-135M-Instruct" and block["versions"]["torch"]
    assert "study verdict" in (smoke_run / "results/drift/drift_analysis_report.txt").read_text()


def test_criteria_gate_the_h1_h2_reading_on_refusal_and_learning(smoke_run: Path):
    result, document = read(smoke_run, STATISTICS), read(smoke_run, "results/drift/criteria.json")
    assert result["criteria"]["criteria"] == document["criteria"] and result["verdict"] in document["reason"]
    records = {c["id"]: c for c in document["criteria"]}
    finetune = read(smoke_run, "results/drift/finetune.json")
    assert records["start_model_refuses"]["value"]["harmful"] == finetune["refusal_before"]["harmful"]["rate"]
    assert records["finetuning_learns"]["value"]["first"] == finetune["history"][0]["loss"]  # two steps: one each end
    assert {f"{g}_decides_h1_or_h2" for g in SAFETY_GROUPS} <= set(records)
    for group in SAFETY_GROUPS:
        expectation = records[f"{group}_decides_h1_or_h2"]
        assert expectation["interval"] == result["comparisons"][group][f"random_matched:{group}"]["relative"]["drift_ci"]
        if any(records[p]["verdict"] != "pass" for p in expectation["depends_on"]):
            assert expectation["verdict"] == "not_testable"


@pytest.mark.parametrize("change", ["drift_log_interval: 2", "learning_rate: 0.001"])
def test_a_fine_tuning_change_reruns_only_fine_tuning_and_analysis(smoke_run: Path, change: str):
    (smoke_run / "configs/smoke_ft.yaml").write_text(f"drift:\n  {change}\n")
    jobs = planned_jobs(snakemake(smoke_run, "-n", "drift", configfiles=("configs/smoke.yaml", "configs/smoke_ft.yaml")).stdout)
    assert jobs == {"drift_finetune": 1, "drift_analysis": 1, "drift_tables": 1, "drift": 1}


def test_a_snip_top_k_change_reruns_groups_fine_tuning_and_analysis_not_alignment(smoke_run: Path):
    (smoke_run / "configs/smoke_k.yaml").write_text("drift:\n  snip_top_k: 0.02\n")
    jobs = planned_jobs(snakemake(smoke_run, "-n", "drift", configfiles=("configs/smoke.yaml", "configs/smoke_k.yaml")).stdout)
    assert jobs.get("drift_groups") == 1 and jobs.get("drift_finetune") == 1 and jobs.get("drift_analysis") == 1
    # the SNIP scores are temp() files, gone once the groups were made: both are scored again
    # from the kept aligned model, which is not re-made
    assert jobs.get("drift_snip") == 2
    assert not {"drift_data", "drift_align", "lm_backbone"} & set(jobs)


def test_without_alignment_the_study_starts_from_the_model_as_it_is(smoke_run: Path):
    (smoke_run / "configs/smoke_noalign.yaml").write_text("drift:\n  align: false\n")
    result = snakemake(smoke_run, "-n", "drift", configfiles=("configs/smoke.yaml", "configs/smoke_noalign.yaml"))
    jobs = planned_jobs(result.stdout)
    assert "drift_align" not in jobs and jobs.get("drift_snip") == 2 and jobs.get("drift_finetune") == 1
    assert "input: results/lm/models/SmolLM2-135M-Instruct, results/drift/data.json" in result.stdout


def test_paper_preset_plans_no_alignment_and_asks_for_7b_memory(workflow_copy: Path):
    result = snakemake(workflow_copy, "-n", "drift", configfiles=("configs/paper.yaml",))
    jobs = planned_jobs(result.stdout)
    assert set(jobs) == {"lm_backbone", "drift"} | STUDY_RULES - {"drift_align"}
    assert "results/lm/models/meta-llama--Llama-2-7b-chat-hf" in result.stdout
    finetune = result.stdout.split("rule drift_finetune:")[1].split("\n\n")[0]
    assert re.search(r"mem_mb=40000\b", finetune) and "gpu=1" in finetune
