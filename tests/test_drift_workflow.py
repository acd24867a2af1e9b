"""The safety-neuron drift study on the smoke preset (one run of the `drift` target): every declared
output, group files of valid ids, matched controls, the drift log, the verdict; no-op and
incremental re-runs; the paper preset's DAG without the alignment rule."""

import json
import math
import re
from pathlib import Path

import pytest

from conftest import planned_jobs, snakemake
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

pytestmark = pytest.mark.workflow

MEASURES = ("cosine", "cosine_distance", "l2", "relative", "norm")
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
    for name in ("drift_timeseries", "final_drift_distributions", "refusal"):
        assert (smoke_run / f"results/drift/figures/{name}.png").stat().st_size > 10_000, name


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
    assert [r["step"] for r in records if "heldout_loss" in r] == [0, 2]  # held-out loss at the same steps
    assert set(records[-1]["refusal"]) == {"harmful", "benign"}
    assert records[0].get("refusal_reused") and not records[-1].get("refusal_reused")  # the start model is probed once


def test_statistical_results_have_the_verdict_criteria_three_controls_power_and_provenance(smoke_run: Path):
    result = read(smoke_run, STATISTICS)
    assert result["verdict"] == ("not_testable" if result["failed_preconditions"] else result["reading"])
    assert set(result["reading_by_group"]) == set(SAFETY_GROUPS) and result["primary_control"] == "module_norm"
    assert result["thresholds"]["margin"] == 0.2 and result["thresholds"]["n_boot"] == 200
    for group in SAFETY_GROUPS:
        for measure in ("cosine", "l2", "relative"):
            assert set(result["comparisons"][group][measure]) == {"module_norm", "module", "regression"}
            for control, comparison in result["comparisons"][group][measure].items():
                assert comparison["reading"] in ("H1", "no_differential_drift", "safety_drifts_less", "inconclusive"), (group, measure, control)
        assert set(result["power"][group]) == {"cosine", "l2"}
    kinds = [c["kind"] for c in result["criteria"]]
    ids = [c["id"] for c in result["criteria"] if c["kind"] == "precondition"]
    assert ids == ["alignment_refuses", "finetune_learns", "finetune_lowers_refusal", "test_has_power"] and "expectation" in kinds
    for c in result["criteria"]:
        assert set(c) >= {"id", "statement", "source", "kind", "threshold", "value", "interval", "verdict", "depends_on"}
        if c["kind"] == "expectation" and result["failed_preconditions"]:
            assert c["verdict"] == "not_testable"  # never "fail" when a precondition failed
    assert (result["verdict"] == "not_testable") == bool(result["failed_preconditions"])
    # refusal.before_alignment is false by default; the fine-tuning's start is the alignment's "after"
    assert set(result["refusal"]) == {"after_alignment", "start_of_finetuning", "after_finetuning"}
    assert result["refusal"]["start_of_finetuning"] == result["refusal"]["after_alignment"]
    for rates in result["refusal"].values():
        for rate in rates.values():
            assert rate["interval"][0] <= rate["rate"] <= rate["interval"][1]
    assert result["heldout_loss"]["n"] == 2 and result["population"] > 0
    block = result["provenance"]
    assert block["seed"] == 0 and block["config"]["max_steps"] == 2 and block["config"]["snip_top_k"] == 0.01
    assert block["config"]["model"] == "SmolLM2-135M-Instruct" and block["versions"]["torch"]
    assert "study verdict" in (smoke_run / "results/drift/drift_analysis_report.txt").read_text()


def test_criteria_json_gates_each_safety_group_on_the_preconditions(smoke_run: Path):
    result, document = read(smoke_run, STATISTICS), read(smoke_run, "results/drift/criteria.json")
    records = {c["id"]: c for c in document["criteria"]}
    assert [c["id"] for c in document["criteria"] if c["kind"] == "precondition"] == [c["id"] for c in result["criteria"] if c["kind"] == "precondition"]
    failed = [p for p in ("alignment_refuses", "finetune_learns", "finetune_lowers_refusal", "test_has_power") if records[p]["verdict"] != "pass"]
    assert failed == result["failed_preconditions"]
    for group in SAFETY_GROUPS:
        decides = records[f"{group}_decides"]
        assert decides["kind"] == "expectation" and decides["value"] == result["reading_by_group"][group]
        expected = "not_testable" if failed else ("fail" if decides["value"] in ("inconclusive", "mixed") else "pass")
        assert decides["verdict"] == expected
    assert document["verdict"] == ("not testable" if failed else "held" if all(
        records[f"{g}_decides"]["verdict"] == "pass" for g in SAFETY_GROUPS) else "not held")
    assert result["reading"] in document["reason"]


@pytest.mark.parametrize("change", ["drift_log_interval: 2", "learning_rate: 0.002"])
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
