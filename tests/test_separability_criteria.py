"""Success criteria on constructed audit logs whose verdicts are known."""

import math
from pathlib import Path

import pytest
import yaml

from weightlab.config import load_schema
from weightlab.separability.criteria import criteria_table, evaluate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "schemas/config.schema.yaml")
THRESHOLDS = {key: spec["default"] for key, spec in SCHEMA["properties"]["separability"]["properties"]["criteria"]["properties"].items()}


def log(run: str, seed: int, metrics: list[dict], **summary) -> dict:
    return {"metadata": {"experiment": run, "seed": seed}, "metrics": [{"step": i, **m} for i, m in enumerate(metrics)], "summary": summary}


def clamp_effect(factor: float) -> dict:
    """A clamp's run summary whose median step scaled what it clamps by `factor`."""
    return {"n_steps": 10, "median": factor, "median_abs_log": abs(math.log(factor)), "acts": abs(math.log(factor)) > math.log1p(0.01)}


def superposition(in_superposition: int, instances: int = 2) -> dict:
    return {"instances": [{} for _ in range(instances)], "n_instances_in_superposition": in_superposition}


def exp_a(control=0.97, constraint=(0.60, 0.61, 0.59), naive=(0.02, 0.01, 0.03), mean_preserving=0.58, act=(1.0, 3.0),
          naive_factor=1.0 / 3.0, mp_factor=0.25):
    """Logs of experiment A; the clamps' summaries hold their per-step scale factors' summary."""
    logs = []
    for seed in range(3):
        logs += [
            log("a_control", seed, [{"psi_accuracy": 0.1, "A_activation_L0": 0.5}, {"psi_accuracy": control, "A_activation_L0": act[0]}]),
            log("a_constraint", seed, [{"psi_accuracy": constraint[seed], "A_activation_L0": act[1]}]),
            log("a_naive_clamp", seed, [{"psi_accuracy": naive[seed], "A_activation_L0": 1.0}],
                clamp_effect=clamp_effect(naive_factor)),
            log("a_mean_preserving_clamp", seed, [{"psi_accuracy": mean_preserving, "A_activation_L0": 3.0}],
                clamp_effect=clamp_effect(mp_factor)),
        ]
    return logs


VERDICT = {"pass": True, "fail": False, "not_evaluable": None, "not_testable": "not testable"}


def verdicts(logs) -> dict:
    return {c["id"]: VERDICT[c["verdict"]] for c in evaluate(logs, THRESHOLDS)["criteria"]}


def test_every_threshold_has_a_schema_default_from_the_original():
    assert THRESHOLDS["a_control_accuracy_min"] == 0.95 and THRESHOLDS["a_constraint_accuracy"] == [0.55, 0.65]
    assert THRESHOLDS["c_rho_max"] == -0.3 and THRESHOLDS["d_ratio_min"] == 2.0


def test_experiment_a_passes_when_the_original_expectations_hold():
    v = verdicts(exp_a())
    assert [v[k] for k in ("A1", "A2", "A3", "A4", "A5", "A6")] == [True] * 6


def test_experiment_a_fails_each_expectation_separately():
    v = verdicts(exp_a(constraint=(0.7, 0.7, 0.71), naive=(0.3, 0.3, 0.31), mean_preserving=0.3, act=(1.0, 1.5)))
    assert [v[k] for k in ("A1", "A2", "A3", "A4", "A5")] == [True] + [False] * 4


def test_a_control_that_cannot_do_the_task_makes_experiment_a_not_testable():
    result = evaluate(exp_a(control=0.6, constraint=(0.7, 0.7, 0.71)), THRESHOLDS)
    records = {c["id"]: c for c in result["criteria"]}
    assert records["A1"]["kind"] == "precondition" and records["A1"]["verdict"] == "fail"
    assert all(records[k]["verdict"] == "not_testable" and "A1 fail" in records[k]["reason"] for k in ("A2", "A3", "A4", "A5", "A6"))
    assert result["verdict"] in ("not testable", "not held") and "A1" in result["reason"]


def test_a_clamp_that_changes_nothing_is_a_failed_precondition():
    v = verdicts(exp_a(naive_factor=1.0005, mp_factor=1.0))  # factors of 1: the clamps are no-ops
    assert v["A_naive_clamp_acts"] is False and v["A_mean_preserving_clamp_acts"] is False
    assert v["A4"] == v["A5"] == v["A6"] == "not testable" and v["A2"] is True
    records = {c["id"]: c for c in evaluate(exp_a(), THRESHOLDS)["criteria"]}
    assert records["A_naive_clamp_acts"]["value"] == pytest.approx(2.0) and records["A_mean_preserving_clamp_acts"]["value"] == pytest.approx(3.0)


def test_cohens_d_is_not_evaluable_with_one_seed_and_missing_runs_are_not_passed():
    one_seed = [entry for entry in exp_a() if entry["metadata"]["seed"] == 0]
    result = evaluate(one_seed, THRESHOLDS)
    a6 = next(c for c in result["criteria"] if c["id"] == "A6")
    assert a6["verdict"] == "not_evaluable" and "not evaluable" in a6["reason"] and a6["interval"] is None
    a2 = next(c for c in result["criteria"] if c["id"] == "A2")
    assert a2["interval"] is None  # one seed: no interval
    # experiments B-D have no logs here: nothing about them may pass
    assert all(c["verdict"] in ("not_evaluable", "not_testable") for c in result["criteria"] if c["id"][0] in "BCD")
    assert result["counts"]["expectation"]["not_evaluable"] == 1 + 2 + 3  # A6, B1-B2, C1-C3
    assert result["counts"]["expectation"]["not_testable"] == 2  # D1, D2: superposition not measured
    assert result["verdict"] == "not testable"


def test_means_over_seeds_carry_their_interval():
    records = {c["id"]: c for c in evaluate(exp_a(), THRESHOLDS)["criteria"]}
    low, high = records["A2"]["interval"]
    assert records["A2"]["value"] == pytest.approx(0.6) and low < 0.6 < high


def test_experiments_b_to_d_read_their_summaries():
    logs = [
        log("b_critical", 0, [{"psi_logit_diff": 1.0}], late_final_position_norm_ratio=1.5, delta_logit_diff=-2.0,
            late_final_position_norm_ratio_ci95=[1.4, 1.6], recovered_fraction=0.3),
        log("b_random", 0, [{"psi_logit_diff": 3.0}], late_final_position_norm_ratio=1.0, delta_logit_diff=-0.1,
            late_final_position_norm_ratio_ci95=[0.85, 1.05]),
        log("c_high_wd", 0, [{"A_param": 10.0}, {"A_param": 5.0}], transition_step=900, spearman_rho=-0.5),
        log("c_no_wd", 0, [{"A_param": 10.0}, {"A_param": 9.5}], transition_step=None, spearman_rho=None),
        log("d_superposition", 0, [{"loss": 1.0}], ratio=2.5, ci95=[1.2, 3.0], n_suppressors=3, n_clean=30, superposition=superposition(2)),
    ]
    v = verdicts(logs)
    assert (v["B1"], v["B2"], v["C1"], v["C2"], v["C3"], v["D1"], v["D2"]) == (True, False, True, True, True, True, True)
    logs[2]["summary"]["transition_step"] = None
    logs[4]["summary"]["ci95"] = [0.8, 3.0]
    logs[1]["summary"]["late_final_position_norm_ratio_ci95"] = [0.95, 1.04]  # B2: the interval inside [0.9, 1.1]
    logs[3]["summary"]["transition_step"] = 1200  # C3's second half: no weight decay must not transition
    v = verdicts(logs)
    assert v["C1"] is False and v["D2"] is False and v["B2"] is True and v["C3"] is False


def test_no_suppressor_found_makes_the_superposition_expectations_not_testable():
    logs = [log("d_superposition", 0, [{"loss": 1.0}], ratio=None, ci95=None, n_suppressors=0, n_clean=40,
                note="no suppressor unit: the ratio is undefined", superposition=superposition(2))]
    result = {c["id"]: c for c in evaluate(logs, THRESHOLDS)["criteria"]}
    assert result["D_groups"]["kind"] == "precondition" and result["D_groups"]["verdict"] == "fail"
    assert result["D_groups"]["value"] == 0.0 and "seed 0: 0 suppressor / 40 clean" in result["D_groups"]["reason"]
    assert result["D1"]["verdict"] == "not_testable" and result["D1"]["value"] is None
    assert "D_groups fail" in result["D1"]["reason"] and "no suppressor unit" in result["D1"]["reason"]
    assert result["D2"]["verdict"] == "not_testable"
    # a second seed that finds both groups: the precondition still needs every seed
    logs.append(log("d_superposition", 1, [{"loss": 1.0}], ratio=2.5, ci95=[1.2, 3.0], n_suppressors=2, n_clean=38,
                    superposition=superposition(2)))
    result = {c["id"]: c for c in evaluate(logs, THRESHOLDS)["criteria"]}
    assert result["D_groups"]["value"] == 0.5 and result["D_groups"]["verdict"] == "fail"
    assert result["D1"]["verdict"] == "not_testable"
    logs[0]["summary"].update(ratio=1.1, ci95=[0.7, 1.6], n_suppressors=1, note=None)  # both groups in both seeds: judged
    result = {c["id"]: c for c in evaluate(logs, THRESHOLDS)["criteria"]}
    assert result["D_groups"]["verdict"] == "pass" and result["D1"]["verdict"] == "fail" and result["D2"]["verdict"] == "fail"
    assert result["D1"]["value"] == pytest.approx(1.8)
    logs[0]["summary"]["superposition"] = superposition(1)  # one instance not in superposition: no unit can be a suppressor of it
    result = {c["id"]: c for c in evaluate(logs, THRESHOLDS)["criteria"]}
    assert result["D_superposition"]["verdict"] == "fail" and result["D1"]["verdict"] == "not_testable"
    assert "D_superposition fail" in result["D1"]["reason"] and "D_groups" not in result["D1"]["reason"].split("(measured")[0]


def test_c2_on_one_seed_judges_its_rho_and_shows_the_runs_own_interval():
    def c_logs(rhos, cis):
        return [log("c_high_wd", seed, [{"A_param": 10.0}, {"A_param": 5.0}], transition_step=900, spearman_rho=rho, rho_ci95=ci)
                for seed, (rho, ci) in enumerate(zip(rhos, cis))]

    c2 = {c["id"]: c for c in evaluate(c_logs([-0.5], [[-0.7, -0.2]]), THRESHOLDS)["criteria"]}["C2"]
    assert c2["verdict"] == "pass" and c2["value"] == -0.5 and c2["interval"] == [-0.7, -0.2]
    assert "within the run" in c2["reason"] and "not over seeds" in c2["reason"]
    c2 = {c["id"]: c for c in evaluate(c_logs([-0.25], [[-0.6, 0.1]]), THRESHOLDS)["criteria"]}["C2"]
    assert c2["verdict"] == "fail"
    # three seeds: the t interval over the seeds' ρ decides (its upper end must be below -0.3)
    c2 = {c["id"]: c for c in evaluate(c_logs([-0.5, -0.55, -0.45], [None] * 3), THRESHOLDS)["criteria"]}["C2"]
    assert c2["verdict"] == "pass" and c2["value"] == pytest.approx(-0.5)
    assert c2["interval"] == pytest.approx([-0.5 - 4.302653 * 0.05 / 3 ** 0.5, -0.5 + 4.302653 * 0.05 / 3 ** 0.5], rel=1e-5)
    c2 = {c["id"]: c for c in evaluate(c_logs([-0.5, -0.6, -0.4], [None] * 3), THRESHOLDS)["criteria"]}["C2"]
    assert c2["verdict"] == "fail"  # mean -0.5 < -0.3, but the interval (upper end -0.25) reaches above it


def test_table_lists_every_criterion():
    table = criteria_table(evaluate(exp_a(), THRESHOLDS))
    assert table.count("\n") == 1 + 17 and "not evaluable" in table and "pass" in table and "study verdict" in table


def test_thresholds_in_config_are_the_schema_defaults():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert config["separability"]["criteria"] == THRESHOLDS
