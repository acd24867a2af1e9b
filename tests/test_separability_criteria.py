"""Success criteria on constructed audit logs whose verdicts are known."""

from __future__ import annotations

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


T95_2 = 4.302653  # Student-t 97.5% quantile, 2 degrees of freedom (three seeds)
SOURCE = "shared/sources/003_*, Success Criteria: "


def records(logs, **thresholds) -> dict:
    """The judged records by id, with `thresholds` overriding the schema defaults."""
    return {c["id"]: c for c in evaluate(logs, {**THRESHOLDS, **thresholds})["criteria"]}


def interval(mean: float, sd: float) -> list:
    """The 95% t interval of a mean over three seeds with sample standard deviation `sd`."""
    half = T95_2 * sd / 3 ** 0.5
    return pytest.approx([mean - half, mean + half], rel=1e-5, abs=1e-9)


def test_experiment_a_records_are_whole_with_their_values_intervals_and_reasons():
    """Three seeds: control 0.97; constraint 0.60/0.61/0.59 (sd 0.01); naive 0.02/0.01/0.03 (sd 0.01);
    mean-preserving 0.58; activation 1 (control) and 3 (constraint). By hand: A3 = 3/1, A5 = 0.58/0.6,
    A6 d = 0.58 / 0.01 = 58."""
    got = records(exp_a())
    expected = {
        "A1": ("control reaches high accuracy (all heads train)", "Experiment A: Control ≥95% accuracy", "precondition",
               ">= 0.95", 0.97, interval(0.97, 0.0), "pass", "mean final held-out accuracy over 3 seed(s)", []),
        "A2": ("constraint (3 of 4 heads frozen) lands in the original's accuracy band", "Experiment A: Constraint 55-65% accuracy",
               "expectation", "in [0.55, 0.65]", 0.6, interval(0.6, 0.01), "pass", "mean over 3 seed(s)", ["A1"]),
        "A3": ("under constraint, amplitude (A_activation of the last layer's residual stream) is far higher than in the control",
               "Experiment A: A_activation > 2.0", "expectation", "constraint / control >= 2.0", 3.0, None, "pass",
               "control 1, constraint 3", ["A1"]),
        "A4": ("naive clamp (amplitude and variance fixed) collapses", "Experiment A: Naive clamp <5% accuracy (catastrophic)",
               "expectation", "< 0.05", 0.02, interval(0.02, 0.01), "pass",
               "mean over 3 seed(s); the clamp acts (precondition, per seed): naive [True, True, True], "
               "mean-preserving [True, True, True]", ["A1", "A_naive_clamp_acts"]),
        "A5": ("mean-preserving clamp (variance only) keeps the constraint's accuracy", "Experiment A: Mean-preserving ≥90% of constraint",
               "expectation", "mean-preserving / constraint >= 0.9", 0.58 / 0.6, None, "pass", "mean-preserving 0.58, constraint 0.6",
               ["A1", "A_mean_preserving_clamp_acts"]),
        "A6": ("constraint vs naive clamp: a very large effect on accuracy (Cohen's d)",
               "Statistical analysis: Expected: d > 4.0 (very large effect)", "expectation", "> 4.0", 58.0, None, "pass",
               "per-seed final accuracies, 3 and 3 seed(s)", ["A1", "A_naive_clamp_acts"]),
    }
    for id_, (statement, source, kind, threshold, value, ci, verdict, reason, depends_on) in expected.items():
        assert got[id_] == {"id": id_, "statement": statement, "source": SOURCE + source, "kind": kind, "threshold": threshold,
                            "value": pytest.approx(value, rel=1e-9), "interval": ci, "verdict": verdict, "reason": reason,
                            "depends_on": depends_on}, id_


def test_unmeasurable_records_say_why_and_keep_no_value():
    """One seed of A and no B log: Cohen's d needs two seeds per condition; B1 (no value) and B2 (no
    interval) are not evaluable, each with its own reason."""
    got = records([entry for entry in exp_a() if entry["metadata"]["seed"] == 0])
    assert (got["A6"]["value"], got["A6"]["interval"], got["A6"]["verdict"]) == (None, None, "not_evaluable")
    assert got["A6"]["reason"] == ("not evaluable: per-seed final accuracies, 1 and 1 seed(s); "
                                   "not evaluable: needs >= 2 seeds per condition with spread")
    assert got["A1"]["reason"] == "mean final held-out accuracy over 1 seed(s)" and got["A1"]["interval"] is None
    assert (got["B1"]["value"], got["B1"]["verdict"]) == (None, "not_evaluable")
    assert got["B1"]["reason"] == ("not evaluable: mean over 0 seed(s), 95% interval over prompts []; Δlogit_diff —; "
                                   "recovered fraction (Rushing & Nanda) —")
    assert (got["B2"]["value"], got["B2"]["verdict"]) == (None, "not_evaluable")
    assert got["B2"]["reason"] == "not evaluable: no random-head log with an interval"


def test_a_threshold_met_exactly_counts_as_the_original_states_it():
    """>= and the band's ends include the threshold, < and > exclude it (values exact in binary)."""
    edge = dict(a_control_accuracy_min=0.75, a_constraint_accuracy=[0.5, 0.75], a_activation_ratio_min=2.0,
                a_naive_accuracy_max=0.125, a_mean_preserving_fraction_min=0.5)
    low = records(exp_a(control=0.75, constraint=(0.5,) * 3, naive=(0.125,) * 3, mean_preserving=0.25, act=(1.0, 2.0)), **edge)
    assert [low[k]["value"] for k in ("A1", "A2", "A3", "A4", "A5")] == [0.75, 0.5, 2.0, 0.125, 0.5]
    assert [low[k]["verdict"] for k in ("A1", "A2", "A3", "A4", "A5")] == ["pass", "pass", "pass", "fail", "pass"]
    assert records(exp_a(control=0.75, constraint=(0.75,) * 3), **edge)["A2"]["verdict"] == "pass"
    # Cohen's d exactly at its threshold: (0.625 - 0.125) / 0.125 = 4.0 is not above 4.0
    a6 = records(exp_a(constraint=(0.5, 0.625, 0.75), naive=(0.0, 0.125, 0.25)), a_cohens_d_min=4.0)["A6"]
    assert a6["value"] == 4.0 and a6["verdict"] == "fail"


def test_a_missing_or_zero_measurement_makes_its_ratio_not_evaluable():
    """A3 without the control's activation, A5 without a mean-preserving run or with a constraint at
    zero accuracy: no ratio (not evaluable), never a division by a missing value or by zero."""
    logs = exp_a()
    for entry in logs:
        if entry["metadata"]["experiment"] == "a_control":
            for metrics in entry["metrics"]:
                del metrics["A_activation_L0"]
    a3 = records(logs)["A3"]
    assert (a3["value"], a3["verdict"], a3["reason"]) == (None, "not_evaluable", "not evaluable: control —, constraint 3")
    no_mp = [entry for entry in exp_a() if entry["metadata"]["experiment"] != "a_mean_preserving_clamp"]
    a5 = records(no_mp)["A5"]
    assert a5["value"] is None and "(measured: not_evaluable, not evaluable: mean-preserving —, constraint 0.6)" in a5["reason"]
    a5 = records(exp_a(constraint=(0.0,) * 3))["A5"]
    assert a5["value"] is None and a5["reason"].startswith("not evaluable: mean-preserving 0.58, constraint 0")


def test_a3_reads_the_last_layers_final_activation_before_layer_0s():
    logs = exp_a()
    for entry in logs:
        run = entry["metadata"]["experiment"]
        if run in ("a_control", "a_constraint"):
            entry["summary"]["final_A_activation"] = {"a_control": 2.0, "a_constraint": 8.0}[run]
    a3 = records(logs)["A3"]
    assert a3["value"] == 4.0 and a3["reason"] == "control 2, constraint 8"  # layer 0's metrics would give 3.0 (1 and 3)


def b_logs(critical=(1.5, 1.75), random_ci=([0.95, 1.05], [0.9, 1.1])) -> list:
    """Experiment B over two seeds: the critical ablation's residual-norm ratios, the random one's intervals."""
    logs = []
    for seed in range(2):
        logs += [log("b_critical", seed, [{"psi_logit_diff": 1.0}], late_final_position_norm_ratio=critical[seed],
                     late_final_position_norm_ratio_ci95=[critical[seed] - 0.25, critical[seed] + 0.25],
                     delta_logit_diff=-1.0 - seed, recovered_fraction=0.25 * (seed + 1)),
                 log("b_random", seed, [{"psi_logit_diff": 3.0}], late_final_position_norm_ratio=1.0 + 0.5 * seed * 0.125,
                     late_final_position_norm_ratio_ci95=random_ci[seed], delta_logit_diff=-0.5, recovered_fraction=0.0)]
    return logs


def test_experiment_b_records_are_whole():
    """B1: mean of 1.5 and 1.75 with its t interval over two seeds (t = 12.706 at 1 degree of freedom,
    standard error 0.125); B2: both seeds' prompt intervals inside [0.9, 1.1], its ends included."""
    got = records(b_logs())
    half = 12.7062047 * 0.125
    assert got["B1"] == {
        "id": "B1", "statement": "ablating the name movers: the late layers' residual norm at the final position rises (after / before)",
        "source": SOURCE + "Experiment B: Critical ablation: Compensation > 1.3× in layers 10-12", "kind": "expectation",
        "threshold": "> 1.3", "value": 1.625, "interval": pytest.approx([1.625 - half, 1.625 + half], rel=1e-6), "verdict": "pass",
        "reason": "mean over 2 seed(s), 95% interval over prompts [[1.25, 1.75], [1.5, 2.0]]; Δlogit_diff −1.5; "
                  "recovered fraction (Rushing & Nanda) 0.375", "depends_on": []}
    assert got["B2"] == {
        "id": "B2", "statement": "ablating random heads (not name movers): the late layers' residual norm at the final position is unchanged",
        "source": SOURCE + "Experiment B: Random ablation: Compensation ≈ 1.0× (no effect)", "kind": "expectation",
        "threshold": "95% interval in [0.9, 1.1]", "value": {"mean": 1.03125, "ci95": [[0.95, 1.05], [0.9, 1.1]]}, "interval": None,
        "verdict": "pass", "reason": "mean over 2 seed(s), 95% interval over prompts [[0.95, 1.05], [0.9, 1.1]]; Δlogit_diff −0.5; "
                                     "recovered fraction (Rushing & Nanda) 0", "depends_on": []}
    # B1's threshold met exactly is not above it
    assert records(b_logs(critical=(1.3, 1.3)))["B1"]["verdict"] == "fail"


def test_table_rows_show_the_verdict_the_value_to_four_digits_and_the_threshold():
    lines = criteria_table(evaluate(exp_a(mean_preserving=0.29), THRESHOLDS)).split("\n")  # A5: 0.29 / 0.6 fails
    assert len(lines) == 1 + 17 + 1
    assert lines[0] == "id" + " " * 27 + "kind" + " " * 9 + "result" + " " * 9 + "measured" + " " * 21 + "threshold · statement"
    rows = {line.split(" ")[0]: line for line in lines[1:-1]}
    assert rows["A5"] == ("A5" + " " * 27 + "expectation  FAIL" + " " * 11 + "0.4833" + " " * 23
                          + "mean-preserving / constraint >= 0.9 · mean-preserving clamp (variance only) keeps the constraint's accuracy")
    assert rows["B2"].startswith("B2" + " " * 27 + "expectation  not evaluable  None" + " " * 25 + "95% interval in [0.9, 1.1] · ")
    assert rows["D1"].startswith("D1" + " " * 27 + "expectation  not testable   None" + " " * 25 + "variance ratio > 2.0 · ")
    assert lines[-1].startswith("study verdict: not held (A5 failed with every precondition met")


def test_the_document_names_the_study_and_carries_psi_per_condition_with_the_compared_effects():
    """Ψ is the final accuracy, or the logit difference where no accuracy is logged (experiment B);
    Cohen's d by hand: (0.625 − 0.125) / 0.125 = 4, (0.875 − 0.625) / 0.125 = 2, (0.375 − 0.125) / 0.125 = 2,
    (0.875 − 0.375) / (0.125·√2) = 2√2."""
    logs = exp_a(control=0.0, constraint=(0.5, 0.625, 0.75), naive=(0.0, 0.125, 0.25))
    for entry in logs:  # per-seed Ψ: control 0.75/0.875/1.0, mean-preserving 0.25/0.375/0.5
        seed, run = entry["metadata"]["seed"], entry["metadata"]["experiment"]
        if run in ("a_control", "a_mean_preserving_clamp"):
            entry["metrics"][-1].update(psi_accuracy={"a_control": 0.75, "a_mean_preserving_clamp": 0.25}[run] + 0.125 * seed,
                                        psi_logit_diff=9.0)
    logs += [log("c_high_wd", 0, [{"psi_accuracy": 0.75}]), log("c_high_wd", 1, [{"psi_accuracy": 1.0}]),
             log("c_no_wd", 0, [{"psi_accuracy": 0.25}]), log("c_no_wd", 1, [{"psi_accuracy": 0.5}]),
             log("b_critical", 0, [{"psi_logit_diff": 2.0}, {"psi_logit_diff": 1.5}])]
    result = evaluate(logs, THRESHOLDS)
    assert result["study"] == "separability" and result["hypothesis"] == (
        "Separability is conserved (Ψ = G + A): constrained routing is paid for by amplitude.")
    assert result["seeds"] == {"a_control": [0, 1, 2], "a_constraint": [0, 1, 2], "a_naive_clamp": [0, 1, 2],
                               "a_mean_preserving_clamp": [0, 1, 2], "c_high_wd": [0, 1], "c_no_wd": [0, 1], "b_critical": [0]}
    conditions = result["aggregate"]["conditions"]
    assert {name: c["values"] for name, c in conditions.items()} == {
        "a_control": [0.75, 0.875, 1.0], "a_constraint": [0.5, 0.625, 0.75], "a_naive_clamp": [0.0, 0.125, 0.25],
        "a_mean_preserving_clamp": [0.25, 0.375, 0.5], "c_high_wd": [0.75, 1.0], "c_no_wd": [0.25, 0.5], "b_critical": [1.5]}
    assert result["aggregate"]["cohens_d"] == pytest.approx({
        "a_constraint_vs_a_naive_clamp": 4.0, "a_control_vs_a_constraint": 2.0,
        "a_mean_preserving_clamp_vs_a_naive_clamp": 2.0, "c_high_wd_vs_c_no_wd": 2 * 2 ** 0.5})
    without_c = evaluate([entry for entry in logs if not entry["metadata"]["experiment"].startswith("c_")], THRESHOLDS)
    assert set(without_c["aggregate"]["cohens_d"]) == {"a_constraint_vs_a_naive_clamp", "a_control_vs_a_constraint",
                                                        "a_mean_preserving_clamp_vs_a_naive_clamp"}


def test_logs_without_a_measure_leave_it_not_evaluable():
    """No A_param logged in the no-weight-decay run (no peak: C3 has no value); no superposition
    measures in D's log (its precondition is not evaluable)."""
    logs = [log("c_no_wd", 0, [{"loss": 1.0}], transition_step=None),
            log("d_superposition", 0, [{"loss": 1.0}], ratio=2.5, ci95=[1.2, 3.0], n_suppressors=3, n_clean=30)]
    got = records(logs)
    assert got["C3"]["value"] is None and got["C3"]["verdict"] == "not_evaluable"
    assert got["D_superposition"]["value"] is None and got["D_superposition"]["verdict"] == "not_evaluable"
    assert got["D_superposition"]["reason"] == "no superposition log with its measures"
