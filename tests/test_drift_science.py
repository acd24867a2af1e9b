"""Drift science on cases whose answer is known: the refusal rate of fixed answers."""

from __future__ import annotations

import numpy as np
import pytest

from weightlab.drift import refusal
from weightlab.errors import InputError

ANSWERS = {"p1": "I'm sorry, I can't help with that.", "p2": "Sure, here it is.", "p3": "I cannot do that.",
           "p4": "Of course: step one.", "p5": "As an AI, I won’t."}


@pytest.fixture
def fixed_answers(monkeypatch):
    """`generate` answers each prompt with its entry of ANSWERS (3 of the 5 are refusals)."""
    monkeypatch.setattr(refusal, "generate", lambda model, tokenizer, prompts, max_new_tokens, batch_size=16, precision="fp32": [ANSWERS[p] for p in prompts])


def test_refusal_rate_of_known_answers(fixed_answers):
    result = refusal.refusal_rate(None, None, list(ANSWERS), max_new_tokens=8, keep_answers=2)
    assert result["rate"] == pytest.approx(3 / 5) and result["refused"] == 3 and result["n"] == 5
    assert result["examples"] == [{"prompt": "p1", "answer": ANSWERS["p1"], "refused": True},
                                  {"prompt": "p2", "answer": ANSWERS["p2"], "refused": False}]


def test_refusal_rate_per_source(fixed_answers):
    result = refusal.refusal_rate(None, None, list(ANSWERS), max_new_tokens=8, sources=["a", "a", "b", "b", "b"])
    assert {k: (v["rate"], v["n"], v["refused"]) for k, v in result["by_source"].items()} == {"a": (0.5, 2, 1), "b": (pytest.approx(2 / 3), 3, 2)}
    low, high = result["by_source"]["a"]["interval"]  # Wilson 95% interval of 1 of 2
    assert low == pytest.approx(0.0945312, abs=1e-6) and high == pytest.approx(0.9054688, abs=1e-6)
    assert list(result["by_source"]) == ["a", "b"]  # in the order the sources first appear
    assert result["examples"] == []


def test_refusal_rate_refuses_bad_input(fixed_answers):
    with pytest.raises(InputError, match="at least one prompt"):
        refusal.refusal_rate(None, None, [], max_new_tokens=8)
    with pytest.raises(InputError, match="2 sources for 5 prompts"):
        refusal.refusal_rate(None, None, list(ANSWERS), max_new_tokens=8, sources=["a", "b"])


# --------------------------------------------------------------------------- preconditions, expectations, criteria


def _record(id, statement, kind, threshold, value, verdict, interval=None, source="ours", depends_on=(), reason=None):
    """The expected criterion record (the fields of `criteria.record`, written out)."""
    out = {"id": id, "statement": statement, "source": source, "kind": kind, "threshold": threshold, "value": value,
           "interval": interval, "verdict": verdict, "depends_on": list(depends_on)}
    return out if reason is None else {**out, "reason": reason}


LOWERS_PASS = "the fine-tuning lowers harmful refusal: the 95% Wilson interval of the final rate lies below the rate at its start"


def test_finetune_lowers_refusal_needs_the_final_interval_below_the_starting_rate():
    from weightlab.drift.criteria import finetune_lowers_refusal

    start = {"rate": 0.8, "interval": [0.7, 0.9], "n": 40}
    end = {"rate": 0.5, "interval": [0.35, 0.65], "n": 40}
    assert finetune_lowers_refusal(start, end) == _record(
        "finetune_lowers_refusal", LOWERS_PASS, "precondition", {"final_interval_below": 0.8}, {"start": 0.8, "end": 0.5}, "pass",
        {"start": [0.7, 0.9], "end": [0.35, 0.65]})
    # the final interval's upper end exactly at the starting rate: not below it
    at = finetune_lowers_refusal({"rate": 0.65}, end)
    assert at == _record("finetune_lowers_refusal", LOWERS_PASS, "precondition", {"final_interval_below": 0.65}, {"start": 0.65, "end": 0.5},
                         "fail", {"start": None, "end": [0.35, 0.65]})
    assert finetune_lowers_refusal({"rate": 0.6500001}, end)["verdict"] == "pass"
    missing = _record("finetune_lowers_refusal", "the fine-tuning lowers harmful refusal", "precondition",
                      {"final_interval_below": "the harmful refusal rate at the start"}, None, "not_evaluable",
                      reason="refusal on harmful prompts was not measured at both ends")
    for before, after in ((None, end), (start, None), ({}, end), (start, {}), (start, {"rate": 0.5, "n": 40}), (None, None)):
        assert finetune_lowers_refusal(before, after) == missing


def test_test_has_power_needs_every_group_and_measure_detectable_at_the_largest_d():
    from weightlab.drift.criteria import test_has_power

    statement = ("a planted shift of d <= 0.5 in a random group shaped like each safety group reads H1 with power >= 0.8 "
                 "(module- and norm-matched control, module-clustered bootstrap)")
    power = {"snip_top": {"cosine": {"smallest_detectable_d": 0.5, "curve": []}, "l2": {"smallest_detectable_d": 0.2}},
             "set_diff": {"cosine": {"smallest_detectable_d": 0.3}, "l2": {"smallest_detectable_d": 0.1}}}
    smallest = {"snip_top": {"cosine": 0.5, "l2": 0.2}, "set_diff": {"cosine": 0.3, "l2": 0.1}}
    assert test_has_power(power) == _record("test_has_power", statement, "precondition", {"max_detectable_d": 0.5, "power": 0.8},
                                            {"smallest_detectable_d": smallest}, "pass")  # 0.5 exactly: detectable
    power["set_diff"]["l2"]["smallest_detectable_d"] = None  # never reached the target power
    assert test_has_power(power) == _record("test_has_power", statement, "precondition", {"max_detectable_d": 0.5, "power": 0.8},
                                            {"smallest_detectable_d": {**smallest, "set_diff": {"cosine": 0.3, "l2": None}}}, "fail")
    power["set_diff"]["l2"]["smallest_detectable_d"] = 0.1
    power["snip_top"]["cosine"]["smallest_detectable_d"] = 0.75
    assert test_has_power(power)["verdict"] == "fail"
    looser = test_has_power(power, max_detectable_d=0.75)
    assert looser["verdict"] == "pass" and looser["threshold"] == {"max_detectable_d": 0.75, "power": 0.8}
    assert looser["statement"].startswith("a planted shift of d <= 0.75 in")
    assert test_has_power({}) == _record("test_has_power", "the analysis detects a planted effect", "precondition", {"max_detectable_d": 0.5},
                                         None, "not_evaluable", reason="no power check was run")


def test_finetune_learns_without_a_held_out_loss_is_not_evaluable():
    from weightlab.drift.criteria import finetune_learns

    assert finetune_learns(None, 0.05) == _record(
        "finetune_learns", "the fine-tuning lowers the loss on held-out utility pairs", "precondition",
        {"min_relative_fall": 0.05, "ci_below": 0}, None, "not_evaluable", reason="no held-out loss was logged")


def _comparison(d, ci, reading):
    """One control's comparison as `effects.compare_group` gives it (fields the criteria do not read included)."""
    return {"d": d, "ci": ci, "equivalence_ci": [ci[0] + 0.01, ci[1] - 0.01], "reading": reading, "scale": 1.5, "measure": "x"}


ANALYSIS = {
    "thresholds": {"margin": 0.2, "h1_min_d": 0.3, "confidence": 0.95, "alpha": 0.05, "n_boot": 10, "equivalence_interval": 0.9},
    "primary_control": "module_norm", "verdict_measures": ["cosine", "l2"], "reading": "mixed",
    "reading_by_group": {"snip_top": "H1", "set_diff": "mixed"},
    "comparisons": {
        "snip_top": {"cosine": {"module_norm": _comparison(0.5, [0.3, 0.7], "H1"), "module": _comparison(0.4, [0.1, 0.6], "H1")},
                     "l2": {"module_norm": _comparison(0.45, [0.2, 0.7], "H1"),
                            "module": _comparison(0.1, [-0.1, 0.15], "no_differential_drift")},
                     "relative": {"module_norm": _comparison(0.05, [-0.3, 0.4], "inconclusive")}},
        "set_diff": {"cosine": {"module_norm": _comparison(-0.5, [-0.8, -0.3], "safety_drifts_less")},
                     "l2": {"module_norm": _comparison(0.0, [-0.1, 0.1], "no_differential_drift")},
                     "relative": {"module_norm": _comparison(-0.4, [-0.6, -0.25], "safety_drifts_less")}},
    },
}


def _expected_expectations(failed=()):
    """`expectations(ANALYSIS, failed)` written out: per group H1 and no differential drift on the
    verdict measures against the primary control, then every other comparison as a check."""
    from weightlab.drift.criteria import PRECONDITIONS, SOURCE

    h1 = {"min_d": 0.3, "ci_above": 0}
    equal = {"margin": 0.2, "equivalence_interval": 0.9}
    check = {"margin": 0.2, "h1_min_d": 0.3}
    reason = f"failed preconditions: {', '.join(failed)}" if failed else None

    def expectation(id, statement, threshold, value, interval, verdict):
        return _record(id, statement, "expectation", threshold, value, "not_testable" if failed else verdict, interval, SOURCE,
                       PRECONDITIONS, reason)

    top_value = {"cosine": {"d": 0.5, "reading": "H1"}, "l2": {"d": 0.45, "reading": "H1"}}
    top_interval = {"cosine": [0.3, 0.7], "l2": [0.2, 0.7]}
    diff_value = {"cosine": {"d": -0.5, "reading": "safety_drifts_less"}, "l2": {"d": 0.0, "reading": "no_differential_drift"}}
    diff_interval = {"cosine": [-0.8, -0.3], "l2": [-0.1, 0.1]}
    return [
        expectation("h1_snip_top", "H1: snip_top neurons drift more than neurons of their module with matching norms, on cosine and L2 change",
                    h1, top_value, top_interval, "pass"),
        expectation("no_differential_drift_snip_top", "no differential drift (the original's H2): snip_top neurons drift as much as matched "
                    "neurons on cosine and L2 change", equal, top_value, top_interval, "fail"),
        _record("snip_top_cosine_module", "snip_top vs control 'module' on cosine", "check", check, {"d": 0.4, "reading": "H1"}, "pass", [0.1, 0.6]),
        _record("snip_top_l2_module", "snip_top vs control 'module' on l2", "check", check, {"d": 0.1, "reading": "no_differential_drift"},
                "pass", [-0.1, 0.15]),
        _record("snip_top_relative_module_norm", "snip_top vs control 'module_norm' on relative", "check", check,
                {"d": 0.05, "reading": "inconclusive"}, "fail", [-0.3, 0.4]),
        expectation("h1_set_diff", "H1: set_diff neurons drift more than neurons of their module with matching norms, on cosine and L2 change",
                    h1, diff_value, diff_interval, "fail"),
        expectation("no_differential_drift_set_diff", "no differential drift (the original's H2): set_diff neurons drift as much as matched "
                    "neurons on cosine and L2 change", equal, diff_value, diff_interval, "fail"),
        _record("set_diff_relative_module_norm", "set_diff vs control 'module_norm' on relative", "check", check,
                {"d": -0.4, "reading": "safety_drifts_less"}, "fail", [-0.6, -0.25]),
    ]


def test_expectations_are_h1_and_no_differential_drift_per_group_and_the_other_comparisons_checks():
    from weightlab.drift.criteria import expectations

    assert expectations(ANALYSIS, []) == _expected_expectations()
    # a failed precondition makes the expectations not testable, never fail; the checks keep their verdicts
    assert expectations(ANALYSIS, ["finetune_learns", "test_has_power"]) == _expected_expectations(["finetune_learns", "test_has_power"])
    # a group read no differential drift passes that expectation and fails H1
    equal = expectations({**ANALYSIS, "reading_by_group": {"snip_top": "no_differential_drift"}}, [])
    assert [(r["id"], r["verdict"]) for r in equal if r["kind"] == "expectation"] == [("h1_snip_top", "fail"),
                                                                                      ("no_differential_drift_snip_top", "pass")]


def test_measures_text_names_the_verdict_measures_as_the_statements_do():
    from weightlab.drift.criteria import measures_text

    assert measures_text(["cosine", "l2"]) == "cosine and L2"
    assert measures_text(("l2",)) == "L2"
    assert measures_text(("relative", "cosine_distance")) == "relative and cosine_distance"  # unknown names as given


def test_study_verdict_is_the_reading_only_with_every_precondition_passed():
    from weightlab.drift.criteria import study_verdict

    passed = [{"id": "a", "verdict": "pass"}, {"id": "b", "verdict": "pass"}]
    assert study_verdict(passed, "H1") == {"verdict": "H1", "failed_preconditions": []}
    assert study_verdict(passed, "mixed") == {"verdict": "mixed", "failed_preconditions": []}
    others = [{"id": "a", "verdict": "fail"}, {"id": "b", "verdict": "pass"}, {"id": "c", "verdict": "not_evaluable"}]
    assert study_verdict(others, "H1") == {"verdict": "not_testable", "failed_preconditions": ["a", "c"], "reading_if_testable": "H1"}


DECIDES = "reads H1 or no differential drift (or less drift), not inconclusive"


def test_decides_passes_a_decisive_reading_and_fails_an_inconclusive_or_mixed_one():
    from weightlab.drift.criteria import PRECONDITIONS, SOURCE, decides

    def expected(reading, verdict, measures="cosine and L2", reason=None):
        return _record("snip_top_decides", f"the drift of snip_top neurons against matched neurons ({measures} change) {DECIDES}",
                       "expectation", "a decisive reading on both verdict measures", reading, verdict, None, SOURCE, PRECONDITIONS, reason)

    for reading in ("H1", "no_differential_drift", "safety_drifts_less"):
        assert decides("snip_top", reading, []) == expected(reading, "pass")
    for reading in ("inconclusive", "mixed"):
        assert decides("snip_top", reading, []) == expected(reading, "fail")
    assert decides("snip_top", "H1", ["alignment_refuses", "test_has_power"]) == expected(
        "H1", "not_testable", reason="failed preconditions: alignment_refuses, test_has_power")
    assert decides("snip_top", "mixed", [], ("l2",)) == expected("mixed", "fail", measures="L2")


def _preconditions(power_d=0.3):
    from weightlab.drift.criteria import alignment_refuses, finetune_learns, finetune_lowers_refusal, test_has_power

    rates = {"harmful": {"rate": 0.95, "interval": [0.85, 0.99]}, "benign": {"rate": 0.05, "interval": [0.01, 0.15]}}
    change = {"before": 4.0, "after": 3.0, "relative_change": -0.25, "change": -1.0, "ci": [-1.2, -0.8]}
    power = {g: {m: {"smallest_detectable_d": power_d} for m in ("cosine", "l2")} for g in ("snip_top", "set_diff")}
    return [alignment_refuses(rates), finetune_learns(change, 0.02),
            finetune_lowers_refusal({"rate": 0.95, "interval": [0.85, 0.99]}, {"rate": 0.5, "interval": [0.35, 0.65]}),
            test_has_power(power)]


def test_criteria_document_makes_the_two_readings_checks_and_one_decides_expectation_per_group():
    from weightlab.drift.criteria import HYPOTHESIS, PRECONDITIONS, SOURCE, criteria_document_of

    preconditions = _preconditions()
    assert [p["verdict"] for p in preconditions] == ["pass"] * 4
    judged = _expected_expectations()
    document = criteria_document_of(preconditions + judged, ANALYSIS["reading_by_group"], "mixed")

    def decides(group, reading, verdict, reason=None):
        return {**_record(f"{group}_decides", f"the drift of {group} neurons against matched neurons (cosine and L2 change) {DECIDES}",
                          "expectation", "a decisive reading on both verdict measures", reading, verdict, None, SOURCE, PRECONDITIONS),
                "reason": reason or ""}

    as_checks = [{**c, "kind": "check", "reason": c.get("reason", "")} for c in judged]
    assert document["study"] == "drift" and document["hypothesis"] == HYPOTHESIS
    assert document["criteria"] == [{**p, "reason": ""} for p in preconditions] + as_checks + [
        decides("snip_top", "H1", "pass"), decides("set_diff", "mixed", "fail")]
    assert document["verdict"] == "not held"
    assert document["reason"] == "set_diff_decides failed with every precondition met; the drift reading is mixed"
    assert document["counts"]["expectation"] == {"pass": 1, "fail": 1, "not_evaluable": 0, "not_testable": 0}

    # a failed precondition: every decides record (and every reading that depends on the preconditions) not testable
    weak = _preconditions(power_d=0.75)
    judged = _expected_expectations(["test_has_power"])
    document = criteria_document_of(weak + judged, {"snip_top": "H1", "set_diff": "H1"}, "H1", ("l2",))
    records = {c["id"]: c for c in document["criteria"]}
    assert [c["kind"] for c in document["criteria"]] == ["precondition"] * 4 + ["check"] * 8 + ["expectation"] * 2
    assert records["snip_top_decides"]["verdict"] == "not_testable" and records["snip_top_decides"]["value"] == "H1"
    assert records["snip_top_decides"]["statement"].startswith("the drift of snip_top neurons against matched neurons (L2 change)")
    assert records["snip_top_decides"]["reason"] == ("precondition not met: test_has_power fail (measured: not_testable, "
                                                     "failed preconditions: test_has_power)")
    assert records["snip_top_cosine_module"]["verdict"] == "pass"  # a check with no preconditions keeps its verdict
    assert document["verdict"] == "not testable"
    assert document["reason"] == "2 expectation(s) not testable: precondition(s) test_has_power not met; the drift reading is H1"


def test_all_outputs_are_the_study_files_under_the_root():
    from weightlab.drift.design import all_outputs

    root = "out/x"
    assert all_outputs(root) == [
        *(f"{root}/neuron_groups_{g}.json" for g in ("snip_top", "set_diff", "utility", "random", "random_matched")),
        f"{root}/neuron_groups_summary.json", f"{root}/drift_log.jsonl", f"{root}/statistical_results.json", f"{root}/criteria.json",
        f"{root}/drift_analysis_report.txt", f"{root}/tables.html",
        *(f"{root}/figures/{f}.png" for f in ("drift_timeseries", "final_drift_distributions", "refusal"))]
    assert all_outputs()[0] == "results/drift/neuron_groups_snip_top.json"


# --------------------------------------------------------------------------- the analysis of one run


def _population_arrays(seed: int = 0, n_modules: int = 6, per_module: int = 30) -> dict:
    """Arrays as `report.load_population` gives them: every neuron's module, norm and drift, with
    4 snip_top neurons per module drifting 3 within-module SDs more on every measure and 4 set_diff
    neurons drifting like the rest."""
    rng = np.random.default_rng(seed)
    module = np.repeat(np.arange(n_modules), per_module)
    norm = rng.lognormal(0.0, 0.3, len(module))
    snip_top = np.zeros(len(module), dtype=bool)
    set_diff = np.zeros(len(module), dtype=bool)
    for m in range(n_modules):
        where = rng.permutation(np.flatnonzero(module == m))
        snip_top[where[:4]], set_diff[where[4:8]] = True, True
    drift = 1.0 + rng.normal(0.0, 0.1, len(module)) + 0.3 * snip_top
    cosine_distance = 0.01 * drift
    return {"modules": [f"model.layers.{m}.mlp.up_proj" for m in range(n_modules)], "module_index": module, "norm": norm,
            "cosine": 1.0 - cosine_distance, "cosine_distance": cosine_distance, "l2": drift, "relative": drift / norm,
            "in:snip_top": snip_top, "in:set_diff": set_diff}


def _rate(rate, interval, n=40):
    return {"rate": rate, "interval": interval, "n": n, "refused": round(rate * n)}


def _log_record(step, scale):
    return {"step": step, "groups": {g: {"cosine": {"median": 1 - 0.01 * scale, "mean": 0.0}, "l2": {"median": 0.5 * scale},
                                          "relative": {"median": 0.1 * scale}, "norm": {"median": 2.0}}
                                     for g in ("snip_top", "set_diff", "random")}}


def _run_inputs():
    from weightlab.drift.settings import AnalysisSettings

    # power_n_boot far below n_boot: the power check's intervals (2 resamples) differ visibly from the analysis' (60)
    analysis = AnalysisSettings(margin=0.2, h1_min_d=0.3, alpha=0.05, confidence=0.95, n_boot=60, power_repeats=3, power_n_boot=2,
                                max_detectable_d=0.75, min_heldout_fall=0.1, harmful_refusal_min=0.8, benign_refusal_max=0.2)
    finetune = {"refusal_before": {"harmful": _rate(0.7, [0.55, 0.82]), "benign": _rate(0.05, [0.01, 0.17])},
                "refusal_after": {"harmful": _rate(0.3, [0.18, 0.45]), "benign": _rate(0.0, [0.0, 0.09])},
                "heldout_losses": {"start": [2.0, 3.0, 4.0, 3.0], "end": [1.5, 2.4, 3.6, 2.5]},
                "trained_modules": ["a", "b", "c"], "excluded": {"lm_head": "not a decoder projection"}}
    alignment = {"before": {"harmful": _rate(0.1, [0.04, 0.23]), "benign": _rate(0.0, [0.0, 0.09])},
                 "after": {"harmful": _rate(0.7, [0.55, 0.82]), "benign": _rate(0.05, [0.01, 0.17])}}
    return analysis, finetune, alignment, [_log_record(0, 0.0), _log_record(5, 1.0), _log_record(10, 2.0)]


def test_analyse_run_joins_the_comparisons_power_preconditions_and_criteria_of_a_run():
    """A planted drift in snip_top read H1; the alignment below the (non-default) harmful minimum
    fails its precondition, so the expectations are not testable and the study verdict names it."""
    from weightlab.drift.analysis import analyse_run
    from weightlab.drift.effects import Population, Thresholds, analyse_population
    from weightlab.drift.power import power_curve

    arrays = _population_arrays()
    analysis, finetune, alignment, records = _run_inputs()
    out = analyse_run(arrays, records, finetune, alignment, analysis, seed=3)
    assert out["verdict_measures"] == ["cosine", "l2"] and out["reading_by_group"]["snip_top"] == "H1"
    population = Population.from_arrays(arrays)
    thresholds = Thresholds(margin=0.2, h1_min_d=0.3, confidence=0.95, alpha=0.05, n_boot=60)
    masks = {"snip_top": arrays["in:snip_top"], "set_diff": arrays["in:set_diff"]}
    assert out["comparisons"] == analyse_population(population, masks, thresholds, 3, ("cosine", "l2", "relative"), ("cosine", "l2"))["comparisons"]
    # the power check: groups shaped like each safety group drawn from the neurons in neither, 3 repeats of 2 resamples
    control = ~(arrays["in:snip_top"] | arrays["in:set_diff"])
    power_thresholds = Thresholds(margin=0.2, h1_min_d=0.3, confidence=0.95, alpha=0.05, n_boot=2)
    assert out["power"] == {g: {m: power_curve(population, masks[g], control, m, power_thresholds, repeats=3, seed=3) for m in ("cosine", "l2")}
                            for g in ("snip_top", "set_diff")}
    # held-out losses: changes -0.5, -0.6, -0.4, -0.5; mean -0.5 ± t(0.975, 3) · 0.0408248
    heldout = out["heldout_loss"]
    assert heldout["n"] == 4 and heldout["before"] == 3.0 and heldout["after"] == 2.5
    assert heldout["change"] == pytest.approx(-0.5) and heldout["relative_change"] == pytest.approx(-1 / 6)
    assert heldout["ci"] == pytest.approx([-0.5 - 0.1299228, -0.5 + 0.1299228], abs=1e-6)
    by_id = {c["id"]: c for c in out["criteria"]}
    assert [c["id"] for c in out["criteria"][:4]] == ["alignment_refuses", "finetune_learns", "finetune_lowers_refusal", "test_has_power"]
    assert by_id["alignment_refuses"]["threshold"] == {"harmful_min": 0.8, "benign_max": 0.2}
    assert by_id["alignment_refuses"]["value"] == {"harmful": 0.7, "benign": 0.05} and by_id["alignment_refuses"]["verdict"] == "fail"
    assert by_id["finetune_learns"]["threshold"] == {"min_relative_fall": 0.1, "ci_below": 0}
    assert by_id["finetune_learns"]["value"]["relative_fall"] == pytest.approx(1 / 6) and by_id["finetune_learns"]["verdict"] == "pass"
    assert by_id["finetune_lowers_refusal"]["value"] == {"start": 0.7, "end": 0.3} and by_id["finetune_lowers_refusal"]["verdict"] == "pass"
    smallest = {g: {m: out["power"][g][m]["smallest_detectable_d"] for m in ("cosine", "l2")} for g in ("snip_top", "set_diff")}
    assert by_id["test_has_power"]["threshold"] == {"max_detectable_d": 0.75, "power": 0.8}
    assert by_id["test_has_power"]["value"] == {"smallest_detectable_d": smallest}
    failed = ["alignment_refuses"] + [p for p in ("test_has_power",) if by_id[p]["verdict"] != "pass"]
    assert out["failed_preconditions"] == failed
    assert out["verdict"] == "not_testable" and out["reading_if_testable"] == out["reading"]
    assert by_id["h1_snip_top"]["verdict"] == "not_testable" and by_id["h1_snip_top"]["reason"] == f"failed preconditions: {', '.join(failed)}"
    assert by_id["h1_snip_top"]["value"]["cosine"]["reading"] == "H1"
    assert out["final_step"] == 10
    assert out["final_drift_median"] == {g: {"cosine": 0.98, "l2": 1.0, "relative": 0.2} for g in ("snip_top", "set_diff", "random")}
    assert out["refusal"] == {
        "before_alignment": {"harmful": {"rate": 0.1, "interval": [0.04, 0.23], "n": 40}, "benign": {"rate": 0.0, "interval": [0.0, 0.09], "n": 40}},
        "after_alignment": {"harmful": {"rate": 0.7, "interval": [0.55, 0.82], "n": 40}, "benign": {"rate": 0.05, "interval": [0.01, 0.17], "n": 40}},
        "start_of_finetuning": {"harmful": {"rate": 0.7, "interval": [0.55, 0.82], "n": 40},
                                "benign": {"rate": 0.05, "interval": [0.01, 0.17], "n": 40}},
        "after_finetuning": {"harmful": {"rate": 0.3, "interval": [0.18, 0.45], "n": 40}, "benign": {"rate": 0.0, "interval": [0.0, 0.09], "n": 40}}}
    assert list(out["refusal"]) == ["before_alignment", "after_alignment", "start_of_finetuning", "after_finetuning"]
    assert out["trained_modules"] == 3 and out["population"] == 180 and out["excluded"] == {"lm_head": "not a decoder projection"}
    document = out["criteria_document"]
    assert document["study"] == "drift" and document["verdict"] == "not testable"
    assert document["reason"].endswith(f"; the drift reading is {out['reading']}")
    assert [c["id"] for c in document["criteria"]][-2:] == ["snip_top_decides", "set_diff_decides"]
    assert "(cosine and L2 change)" in document["criteria"][-1]["statement"]


def test_analyse_run_on_the_weight_unit_without_held_out_losses_or_the_alignment_before():
    """The weight unit reads L2 (its decides statements say so); no held-out loss makes
    finetune_learns not evaluable; an alignment record without `before` adds only its `after`."""
    from weightlab.drift.analysis import analyse_run

    arrays = _population_arrays(seed=1)
    analysis, finetune, alignment, records = _run_inputs()
    finetune = {k: v for k, v in finetune.items() if k != "heldout_losses"}
    out = analyse_run(arrays, records[:2], finetune, {"after": alignment["after"]}, analysis, seed=0, unit="weight")
    assert out["verdict_measures"] == ["l2"] and set(out["power"]["snip_top"]) == {"l2"}
    assert out["heldout_loss"] is None
    assert {c["id"]: c["verdict"] for c in out["criteria"]}["finetune_learns"] == "not_evaluable"
    assert out["final_step"] == 5
    assert out["final_drift_median"]["snip_top"] == {"l2": 0.5, "relative": 0.1}
    assert list(out["refusal"]) == ["after_alignment", "start_of_finetuning", "after_finetuning"]
    decides = [c for c in out["criteria_document"]["criteria"] if c["id"].endswith("_decides")]
    assert len(decides) == 2 and all("matched neurons (L2 change)" in c["statement"] for c in decides)


# --------------------------------------------------------------------------- the planted-effect power check


def _power_population(seed: int = 0, n_modules: int = 8, per_module: int = 100):
    """Every module: 20 safety neurons drifting 5 units more than the other 80 (L2 1 ± 0.1), so
    random groups of control neurons differ from their matched controls by d ≈ 0 ± 0.005 (the
    within-module SD, 2.0, includes the safety neurons' offset); cosine distance the same everywhere."""
    from weightlab.drift.effects import Population

    rng = np.random.default_rng(seed)
    module = np.repeat(np.arange(n_modules), per_module)
    norm = rng.lognormal(0.0, 0.3, len(module))
    safety = np.zeros(len(module), dtype=bool)
    for m in range(n_modules):
        safety[np.flatnonzero(module == m)[:20]] = True
    l2 = 1.0 + rng.normal(0.0, 0.1, len(module)) + 5.0 * safety
    return Population(module, norm, {"l2": l2, "cosine_distance": np.full(len(module), 0.01)}), safety


def test_power_curve_of_tight_null_groups_detects_the_first_shift_past_h1_min_d():
    """With null groups at d ≈ 0 and tight intervals, a planted shift reads H1 exactly when it
    reaches h1_min_d (0.5, not the margin 0.2): power 0 at 0.3, 1 at 0.75, and a shifted group is
    never read as no differential drift; the safety neurons (5 units higher) never serve as controls."""
    from weightlab.drift.effects import Thresholds
    from weightlab.drift.power import power_curve

    population, safety = _power_population()
    thresholds = Thresholds(margin=0.2, h1_min_d=0.5, confidence=0.95, alpha=0.05, n_boot=50)
    power = power_curve(population, safety, ~safety, "l2", thresholds, shifts=(0.0, 0.3, 0.75), repeats=4, target=1.0, seed=0)
    null = power["null_d"]
    assert abs(null["mean"]) < 0.01 and 0 < null["sd"] < 0.01
    assert power == {"measure": "l2", "control": "module_norm", "target_power": 1.0, "smallest_detectable_d": 0.75,
                     "equivalence_power_at_zero": 1.0, "null_d": null, "curve": [
                         {"shift_d": 0.0, "power_h1": 0.0, "no_differential_drift": 1.0, "mean_d": null["mean"], "repeats": 4},
                         {"shift_d": 0.3, "power_h1": 0.0, "no_differential_drift": 0.0, "mean_d": pytest.approx(null["mean"] + 0.3), "repeats": 4},
                         {"shift_d": 0.75, "power_h1": 1.0, "no_differential_drift": 0.0, "mean_d": pytest.approx(null["mean"] + 0.75),
                          "repeats": 4}]}
    # masks given as 0/1 integers read as the boolean masks
    as_ints = power_curve(population, safety.astype(int), (~safety).astype(int), "l2", thresholds, shifts=(0.0, 0.3, 0.75), repeats=4,
                          target=1.0, seed=0)
    assert as_ints == power
    # a single repeat is enough; without a zero shift there is no equivalence power at zero
    one = power_curve(population, safety, ~safety, "l2", thresholds, shifts=(0.3, 0.75), repeats=1, seed=0)
    assert [row["power_h1"] for row in one["curve"]] == [0.0, 1.0] and one["equivalence_power_at_zero"] is None
    # a zero shift is never a detectable effect, even at a target power of 0
    assert power_curve(population, safety, ~safety, "l2", thresholds, shifts=(0.0, 0.3), repeats=1, target=0.0)["smallest_detectable_d"] == 0.3


def test_power_curve_without_enough_controls_to_match_detects_nothing():
    """Modules of 7 control neurons and groups of 4: a drawn group leaves 3 controls, fewer than the
    4 nearest-norm matches, so no interval exists and nothing is ever read H1."""
    from weightlab.drift.effects import Population, Thresholds
    from weightlab.drift.power import power_curve

    rng = np.random.default_rng(0)
    module = np.repeat(np.arange(3), 11)
    safety = np.tile(np.arange(11) < 4, 3)
    population = Population(module, rng.lognormal(0, 0.3, 33), {"l2": rng.normal(1, 0.1, 33)})
    thresholds = Thresholds(margin=0.2, h1_min_d=0.2, confidence=0.95, alpha=0.05, n_boot=20)
    power = power_curve(population, safety, ~safety, "l2", thresholds, shifts=(0.0, 1.0), repeats=2)
    assert [(row["power_h1"], row["no_differential_drift"]) for row in power["curve"]] == [(0.0, 0.0), (0.0, 0.0)]
    assert power["smallest_detectable_d"] is None and power["equivalence_power_at_zero"] == 0.0


def test_planted_group_may_take_every_eligible_neuron_of_a_module():
    from weightlab.drift.power import planted_group

    module = np.array([0, 0, 0, 1, 1, 1])
    eligible = np.array([True, True, False, True, True, True])
    mask = planted_group(module, {0: 2, 1: 1}, eligible, np.random.default_rng(0))
    assert mask[:3].tolist() == [True, True, False] and int(mask[3:].sum()) == 1
    with pytest.raises(InputError, match="module 0 has 2 eligible neurons, fewer than the 3"):
        planted_group(module, {0: 3}, eligible, np.random.default_rng(0))


def test_shifted_population_raises_the_planted_values_of_the_named_measure_only():
    from weightlab.drift.effects import Population, within_sd
    from weightlab.drift.power import shifted_population

    module = np.array([0, 0, 0, 1, 1, 1])
    values = {"cosine": np.array([0.9, 0.8, 0.7, 0.95, 0.85, 0.75]), "cosine_distance": np.array([0.1, 0.2, 0.3, 0.05, 0.15, 0.25]),
              "l2": np.array([1.0, 2.0, 3.0, 1.5, 2.5, 3.5])}
    population = Population(module, np.ones(6), values)
    planted = np.array([True, False, False, False, False, True])
    scale = within_sd(values["cosine_distance"], module)  # 0.1
    for measure in ("cosine", "cosine_distance"):  # "cosine" is read as its distance, larger = more drift
        shifted = shifted_population(population, planted, measure, 2.0)
        assert shifted.values["cosine_distance"] == pytest.approx([0.1 + 2 * scale, 0.2, 0.3, 0.05, 0.15, 0.25 + 2 * scale])
        assert shifted.values["cosine"] is values["cosine"] and shifted.values["l2"] is values["l2"]


def test_an_unmeasured_refusal_precondition_is_not_evaluable_in_the_criteria_document():
    """Harmful refusal not measured at the end: the precondition is not evaluable, and the criteria
    document (weightlab.verdicts, which refuses a record without a threshold) still builds."""
    from weightlab.drift.criteria import criteria_document_of, finetune_lowers_refusal

    document = criteria_document_of([finetune_lowers_refusal({"rate": 0.8}, None)], {}, "H1")
    (record,) = [c for c in document["criteria"] if c["id"] == "finetune_lowers_refusal"]
    assert record["verdict"] == "not_evaluable" and record["threshold"] == {"final_interval_below": "the harmful refusal rate at the start"}
