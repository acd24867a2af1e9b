"""The one criterion record: dependencies, the study verdict, intervals on known samples, JSON round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from weightlab.verdicts import (
    CHECK,
    EXPECTATION,
    FAIL,
    HELD,
    NOT_EVALUABLE,
    NOT_HELD,
    NOT_TESTABLE,
    PASS,
    PRECONDITION,
    STUDY_NOT_TESTABLE,
    Criterion,
    criteria_document,
    criteria_of,
    criterion,
    difference_interval,
    judge,
    ordered,
    study_verdict,
    t_interval,
)


def pre(id_: str, passed: bool | None) -> Criterion:
    return criterion(id_, "the control learns", "ours", PRECONDITION, ">= 0.95", 0.5, passed)


def exp(id_: str, passed: bool | None, needs: tuple[str, ...] = ()) -> Criterion:
    return criterion(id_, "an expected result", "expected result 1", EXPECTATION, "> 0", 1.0, passed, depends_on=needs)


def test_a_failed_precondition_makes_its_dependents_not_testable_never_fail():
    judged = {c.id: c for c in judge([pre("P1", False), pre("P2", True), exp("E1", False, ("P1",)), exp("E2", False, ("P2",)),
                                      exp("E3", True, ("P1", "P2"))])}
    assert judged["E1"].verdict == NOT_TESTABLE and "P1 fail" in judged["E1"].reason and "measured: fail" in judged["E1"].reason
    assert judged["E2"].verdict == FAIL  # its precondition passed: an honest fail
    assert judged["E3"].verdict == NOT_TESTABLE and "P1" in judged["E3"].reason and "P2" not in judged["E3"].reason.split("(")[0]
    assert judged["P1"].verdict == FAIL and judged["P2"].verdict == PASS


def test_not_testable_and_not_evaluable_preconditions_propagate():
    judged = {c.id: c for c in judge([pre("P1", False), criterion("P2", "s", "ours", PRECONDITION, "t", 1, True, depends_on=("P1",)),
                                      pre("P3", None), exp("E1", True, ("P2",)), exp("E2", True, ("P3",))])}
    assert judged["P2"].verdict == NOT_TESTABLE
    assert judged["E1"].verdict == NOT_TESTABLE and "P2 not testable" in judged["E1"].reason
    assert judged["E2"].verdict == NOT_TESTABLE and "P3 not evaluable" in judged["E2"].reason


def test_study_verdict_reads_expectations_only():
    check_fails = criterion("C1", "ours", "ours", CHECK, "t", 0, False)
    assert study_verdict([pre("P1", True), exp("E1", True, ("P1",)), check_fails])["verdict"] == HELD
    held_not = study_verdict([pre("P1", True), pre("P2", False), exp("E1", False, ("P1",)), exp("E2", False, ("P2",))])
    assert held_not["verdict"] == NOT_HELD and "E1 failed" in held_not["reason"] and "P2" in held_not["reason"]
    untestable = study_verdict([pre("P1", False), exp("E1", False, ("P1",)), exp("E2", True)])
    assert untestable["verdict"] == STUDY_NOT_TESTABLE and "P1" in untestable["reason"]
    assert untestable["counts"][EXPECTATION] == {PASS: 1, FAIL: 0, NOT_EVALUABLE: 0, NOT_TESTABLE: 1}
    unevaluable = study_verdict([exp("E1", True), exp("E2", None)])
    assert unevaluable["verdict"] == STUDY_NOT_TESTABLE and "E2 not evaluable" in unevaluable["reason"]
    assert study_verdict([pre("P1", True)])["verdict"] == STUDY_NOT_TESTABLE


def test_bad_dependencies_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        judge([exp("E1", True, ("P9",))])
    with pytest.raises(ValueError, match="not a precondition"):
        judge([exp("E0", True), exp("E1", True, ("E0",))])
    with pytest.raises(ValueError, match="kind"):
        Criterion("X", "s", "ours", "wish", "t")


def test_json_round_trip_and_order():
    criteria = [exp("E1", False, ("P1",)), criterion("C1", "c", "ours", CHECK, "t", {"a": 1}, True), pre("P1", False)]
    document = json.loads(json.dumps(criteria_document("toy", "H", criteria)))
    back = criteria_of(document)
    assert back == judge(criteria) and document["verdict"] == STUDY_NOT_TESTABLE
    assert [c.kind for c in ordered(back)] == [PRECONDITION, EXPECTATION, CHECK]


def test_intervals_on_known_samples():
    values = [1.0, 2.0, 3.0, 4.0]
    mean, ci = t_interval(values)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert mean == 2.5 and ci == pytest.approx([2.5 - half, 2.5 + half])
    assert t_interval([0.3]) == (0.3, None)


def test_difference_interval_is_welchs():
    a, b = [3.0, 4.0, 5.0, 6.0], [1.0, 1.5, 2.0]
    difference, ci = difference_interval(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert difference == pytest.approx(4.5 - 1.5) and ci == pytest.approx([expected.low, expected.high])
    assert difference_interval([1.0], [0.0, 2.0]) == (0.0, None) and difference_interval([2.0, 2.0], [1.0, 1.0]) == (1.0, [1.0, 1.0])


def test_read_verdicts_escapes_markup_and_skips_what_is_missing(tmp_path):
    from weightlab.verdicts import read_verdicts

    document = criteria_document("toy", "H", [pre("models_learn_", False), exp("E1", True, ("models_learn_",))])
    (tmp_path / "criteria.json").write_text(json.dumps(document))
    (tmp_path / "broken.json").write_text("{")
    verdicts = read_verdicts({"Toy": tmp_path / "criteria.json", "Other": tmp_path / "absent.json", "Broken": tmp_path / "broken.json"})
    assert list(verdicts) == ["Toy"] and verdicts["Toy"]["verdict"] == "not testable"
    assert "models\\_learn\\_" in verdicts["Toy"]["reason"]


@pytest.mark.parametrize("field, value", [("statement", None), ("statement", "  "), ("source", None), ("source", ""),
                                          ("id", ""), ("threshold", None), ("threshold", "")])
def test_a_record_must_say_what_it_claims_where_from_and_what_passes(field, value):
    fields = {"id": "X1", "statement": "the control learns", "source": "ours", "threshold": ">= 0.95"} | {field: value}
    with pytest.raises(ValueError, match=field if field != "threshold" else "threshold"):
        criterion(fields["id"], fields["statement"], fields["source"], PRECONDITION, fields["threshold"], 0.5, True)
    assert criterion("X1", "s", "ours", CHECK, {"low": 0}, 1.0, True).threshold == {"low": 0}  # a mapping is a threshold too
