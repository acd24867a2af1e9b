"""Repair science on constructed cases with known answers, added for the survivors of
`benchmarks/mutation.sh repair` (benchmarks/mutation_survivors.md): the base evaluation, the
edit-set file checks, the grid record, the LP's rows and the solvers' bookkeeping."""

import re
from pathlib import Path

import numpy as np
import pytest

from weightlab.errors import InputError
from weightlab.repair.base import base_evaluation, confusion_matrix
from weightlab.repair.core import EditCheck, RepairResult, RepairSettings
from weightlab.repair.editsets import EditSet, candidates, draw_edit_set, grid_order, parse_target, read_edit_set, target_label
from weightlab.repair.experiment import (
    COLUMNS,
    REPAIRED_MODEL,
    RUN_RECORD,
    experiment_record,
    grid_rows,
    grid_summary,
    run_experiment,
    run_paths,
    run_records,
)
from weightlab.repair.solvers import SolveResult


def test_base_evaluation_counts_a_known_confusion():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 0, 1, 1, 0, 0, 2])
    counts = confusion_matrix(labels, predictions, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 2, 0], [2, 0, 1]] and counts.dtype == np.int64
    evaluation = base_evaluation(labels, predictions, ["a", "b", "c"])
    assert evaluation == {
        "test_accuracy": pytest.approx(5 / 8), "num_test": 8, "classes": ["a", "b", "c"],
        "per_class_accuracy": pytest.approx({"a": 2 / 3, "b": 1.0, "c": 1 / 3}),
        "confusion_matrix": [[2, 1, 0], [0, 2, 0], [2, 0, 1]],
        "misclassified_per_class": {"a": 1, "b": 0, "c": 2}, "misclassified_total": 3,
    }
    empty_class = base_evaluation(np.array([0, 0]), np.array([0, 1]), ["a", "b"])  # class b has no image
    assert empty_class["per_class_accuracy"] == {"a": 0.5, "b": 0.0}


# ----------------------------------------------------------------------------- edit-set files

LABELS = np.array([0, 0, 1, 1, 2, 2])
PREDICTIONS = np.array([1, 0, 1, 0, 2, 0])  # misclassified: 0, 3, 5


def _edit_file(tmp_path, name="e.json", **changes):
    import json

    data = draw_edit_set("misclassified", 3, LABELS, PREDICTIONS, seed=0).to_json() | changes
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_an_edit_set_file_round_trips_with_its_first_and_last_images(tmp_path):
    edit_set = read_edit_set(_edit_file(tmp_path), LABELS, PREDICTIONS)
    assert edit_set.indices.tolist() == [0, 3, 5] and edit_set.indices.dtype == np.int64  # 0 and n - 1 are inside
    assert (edit_set.set_type, edit_set.target_class, edit_set.requested_size, edit_set.available, edit_set.seed) == (
        "misclassified", None, 3, 3, 0)


@pytest.mark.parametrize("changes, message", [
    ({"indices": [0, 3, -1], "actual_size": 3}, "outside the test split"),
    ({"indices": [0, 3, 6], "actual_size": 3}, r"outside the test split \(0\.\.5\)"),
    ({"indices": [0, 3, 3], "actual_size": 3}, "repeats images"),
    ({"indices": [0, 3, 5], "actual_size": 2}, "actual_size 2 but 3 indices"),
    ({"indices": [0, 1, 3], "actual_size": 3}, r"test images \[1\] are not misclassified"),
    ({"indices": [0, 3.0, 5]}, "must be integers"),
    ({"indices": [0, True, 5]}, "must be integers"),
    ({"set_type": "random"}, "unknown set_type"),
    ({"seed": "x"}, "not a complete edit set"),
    ({"indices": "0,3,5"}, "no list 'indices'"),
])
def test_an_edit_set_file_that_does_not_fit_the_split_is_refused(tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        read_edit_set(_edit_file(tmp_path, **changes), LABELS, PREDICTIONS)


def test_an_edit_set_file_missing_a_key_or_of_the_wrong_class_is_refused(tmp_path):
    import json

    data = draw_edit_set("misclassified", 3, LABELS, PREDICTIONS, seed=0).to_json()
    del data["available"]
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="lacks key 'available'"):
        read_edit_set(tmp_path / "m.json", LABELS, PREDICTIONS)
    (tmp_path / "l.json").write_text(json.dumps([0, 3]))
    with pytest.raises(InputError, match="is not an edit set"):
        read_edit_set(tmp_path / "l.json", LABELS, PREDICTIONS)
    wrong_class = draw_edit_set("class_homogeneous_incorrect", 1, LABELS, PREDICTIONS, seed=0, target_class=2).to_json()
    wrong_class["indices"] = [0]  # misclassified, but of class 0
    (tmp_path / "c.json").write_text(json.dumps(wrong_class))
    with pytest.raises(InputError, match=r"\(class 2\)"):
        read_edit_set(tmp_path / "c.json", LABELS, PREDICTIONS)


def test_edit_set_names_targets_focus_and_grid_order():
    assert target_label(None) == "all" and target_label(3) == "c3"
    assert parse_target("c12") == 12
    for bad in ("c", "x3", "cx", "3"):
        with pytest.raises(InputError, match="neither 'all' nor"):
            parse_target(bad)
    incorrect = draw_edit_set("class_homogeneous_incorrect", 2, LABELS, PREDICTIONS, seed=0, target_class=0)
    assert incorrect.focus == "incorrect_only" and incorrect.indices.tolist() == [0]
    assert draw_edit_set("misclassified", 2, LABELS, PREDICTIONS, seed=0).focus == "incorrect_only"
    assert incorrect.to_json() == {
        "name": "class_homogeneous_incorrect-c0-n2", "set_type": "class_homogeneous_incorrect", "target_class": 0,
        "repair_set_focus": "incorrect_only", "requested_size": 2, "actual_size": 1, "available": 1,
        "sizing_strategy": "flexible", "seed": 0, "indices": [0],
    }
    rows = [{"repair_set_type": "misclassified", "target_class": None, "requested_repair_set_size": 50},
            {"repair_set_type": "class_homogeneous_correct", "target_class": 3, "requested_repair_set_size": 10},
            {"repair_set_type": "class_homogeneous_correct", "target_class": 0, "requested_repair_set_size": 50},
            {"repair_set_type": "class_homogeneous_correct", "target_class": 0, "requested_repair_set_size": 10},
            {"repair_set_type": "misclassified", "target_class": None, "requested_repair_set_size": 10}]
    assert grid_order(rows[0]) == ("misclassified", -1, 50)
    assert [grid_order(r) for r in sorted(rows, key=grid_order)] == [
        ("class_homogeneous_correct", 0, 10), ("class_homogeneous_correct", 0, 50), ("class_homogeneous_correct", 3, 10),
        ("misclassified", -1, 10), ("misclassified", -1, 50)]


def test_edit_set_requests_out_of_range_are_refused():
    with pytest.raises(InputError, match=r"target class 3 is outside 0\.\.2"):
        candidates("class_homogeneous_correct", LABELS, PREDICTIONS, 3)
    with pytest.raises(InputError, match="outside"):
        candidates("class_homogeneous_correct", LABELS, PREDICTIONS, -1)
    assert candidates("class_homogeneous_correct", LABELS, PREDICTIONS, 2).tolist() == [4]  # the largest class is valid
    # the number of classes is read from labels and predictions alike
    assert candidates("class_homogeneous_incorrect", np.array([0, 0]), np.array([3, 0]), 3).tolist() == []
    with pytest.raises(InputError, match="at least 1"):
        draw_edit_set("misclassified", 0, LABELS, PREDICTIONS, seed=0)
    assert draw_edit_set("misclassified", 1, LABELS, PREDICTIONS, seed=0).actual_size == 1
    with pytest.raises(InputError, match="differ in shape"):
        draw_edit_set("misclassified", 1, LABELS, PREDICTIONS[:-1], seed=0)


def _rng_draw(seed, type_code, target):
    return np.random.default_rng([seed, type_code, target])


def test_edit_set_draws_are_seeded_by_seed_type_and_class():
    rng = np.random.default_rng(1)
    labels, predictions = rng.integers(0, 4, 400), rng.integers(0, 4, 400)
    pool = candidates("misclassified", labels, predictions)
    drawn = draw_edit_set("misclassified", 7, labels, predictions, seed=5)
    assert drawn.indices.tolist() == sorted(_rng_draw(5, 0, 0).permutation(pool)[:7].tolist())
    pool = candidates("class_homogeneous_incorrect", labels, predictions, 2)
    drawn = draw_edit_set("class_homogeneous_incorrect", 7, labels, predictions, seed=5, target_class=2)
    assert drawn.indices.tolist() == sorted(_rng_draw(5, 2, 3).permutation(pool)[:7].tolist())
    assert drawn.available == len(pool) and drawn.requested_size == 7 and drawn.seed == 5
    assert drawn.indices.dtype == np.int64


# ----------------------------------------------------------------------------- the grid record


def _solve_result(**changes):
    fields = dict(solver="highs", status="Optimal", optimal=True, x=None, objective=0.25, iterations=7, barrier_iterations=None,
                  seconds=0.5, choice="requested (x)", message="", details={"licence_limit": None, "solved_in_presolve": None})
    return SolveResult(**(fields | changes))


def _known_run():
    """Six test images of three classes; the edit set is images 1 and 4, which the base model gets
    wrong and the repaired one right; the repaired one breaks image 0."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    baseline = np.array([0, 0, 2, 0, 2, 2])
    repaired = np.array([1, 1, 2, 0, 1, 2])
    edit_set = EditSet(np.array([1, 4]), "misclassified", None, 2, 2, 9)
    result = RepairResult(True, "", "fc3", _solve_result(), 30, 40, delta_weight=np.array([[0.5, -1.0]]),
                          delta_bias=np.array([0.25]), build_seconds=0.125)
    check = EditCheck(accuracy=1.0, min_margin=0.75, pattern_flips=2)
    return labels, baseline, repaired, edit_set, result, check


def test_a_grid_record_holds_the_known_accuracies_and_the_solve():
    labels, baseline, repaired, edit_set, result, check = _known_run()
    paths = run_paths("sets/e.json", "base.pt", "runs/r1")
    assert paths == {"edit_set": "sets/e.json", "baseline": "base.pt", "repaired": str(Path("runs/r1") / REPAIRED_MODEL)}
    settings = RepairSettings(layer="fc3", margin=0.5, param_bound=3.0, objective="linf")
    record = experiment_record(edit_set, labels, baseline, settings, result, repaired, check, 1.5, paths,
                               full_net={"min_margin": 0.7, "accuracy": 1.0})
    expected = {
        "experiment_id": "misclassified-all-n2", "repair_set_type": "misclassified", "repair_set_focus": "incorrect_only",
        "requested_repair_set_size": 2, "edit_set_sizing_strategy": "flexible", "actual_repair_set_size": 2,
        "edit_set_path": "sets/e.json", "target_class": None, "param_bound": 3.0, "margin": 0.5,
        "baseline_model_path": "base.pt", "baseline_accuracy_test_set": pytest.approx(4 / 6), "baseline_accuracy_edit_set": 0.0,
        "repair_runtime_seconds": 1.5, "gurobi_barrier_iterations": None, "repair_successful": True,
        "repaired_model_path": paths["repaired"], "repaired_accuracy_test_set": pytest.approx(5 / 6),
        "repaired_accuracy_edit_set": 1.0, "repaired_accuracy_drawdown_set": pytest.approx(3 / 4), "error_message": "",
        "solver": "highs", "solver_iterations": 7, "layer": "fc3", "lp_objective_kind": "linf", "solver_status": "Optimal",
        "solver_choice": "requested (x)", "gurobi_licence_limit": None, "solved_in_presolve": None, "solver_seconds": 0.5,
        "lp_build_seconds": 0.125, "lp_variables": 30, "lp_constraints": 40, "objective": 0.25, "delta_linf": 1.0,
        "delta_l1": 1.75, "edit_min_margin": 0.75, "edit_pattern_flips": 2, "available_candidates": 2,
        "baseline_accuracy_drawdown_set": 1.0, "repaired_accuracy_edit_set_lp_head": 1.0,
        "lp_solved": True, "edit_min_margin_full_net": 0.7, "edit_accuracy_full_net": 1.0,
    }
    timestamp = record.pop("timestamp")
    assert record == expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", timestamp)


def test_a_grid_record_of_a_failed_or_absent_repair_says_why():
    labels, baseline, repaired, edit_set, result, check = _known_run()
    paths = run_paths("e.json", "base.pt", "r")
    settings = RepairSettings(layer="fc2")
    gurobi = _solve_result(solver="gurobi", iterations=12, barrier_iterations=12,
                           details={"licence_limit": "size-limited", "solved_in_presolve": False})
    rejected = RepairResult(True, "", "fc3", gurobi, 30, 40, np.zeros((1, 2)), np.zeros(1))
    record = experiment_record(edit_set, labels, baseline, settings, rejected, repaired, check, 1.0, paths, reason="float32 slipped")
    assert not record["repair_successful"] and record["error_message"] == "float32 slipped"
    assert record["repaired_model_path"] == "" and record["repaired_accuracy_test_set"] is None
    assert record["repaired_accuracy_edit_set"] is None and record["repaired_accuracy_drawdown_set"] is None
    assert record["lp_solved"] and record["gurobi_barrier_iterations"] == 12 and record["solver"] == "gurobi"
    assert record["gurobi_licence_limit"] == "size-limited" and record["solved_in_presolve"] is False
    infeasible = RepairResult(False, "LP infeasible", "fc3", _solve_result(status="Infeasible", optimal=False), 30, 40)
    record = experiment_record(edit_set, labels, baseline, settings, infeasible, None, None, 1.0, paths)
    assert not record["repair_successful"] and not record["lp_solved"] and record["error_message"] == "LP infeasible"
    assert record["delta_linf"] is None and record["delta_l1"] is None and record["edit_min_margin"] is None
    assert record["edit_pattern_flips"] is None and record["repaired_accuracy_edit_set_lp_head"] is None
    assert record["edit_min_margin_full_net"] is None and record["edit_accuracy_full_net"] is None
    none = experiment_record(edit_set, labels, baseline, settings, None, None, None, 0.0, paths, "edit set is empty")
    assert {k: none[k] for k in ("solver", "solver_status", "solver_choice", "layer", "lp_solved", "error_message")} == {
        "solver": "", "solver_status": "", "solver_choice": "", "layer": "fc2", "lp_solved": False, "error_message": "edit set is empty"}
    for key in ("gurobi_barrier_iterations", "solver_iterations", "gurobi_licence_limit", "solved_in_presolve", "solver_seconds",
                "lp_build_seconds", "lp_variables", "lp_constraints", "objective", "delta_linf", "delta_l1"):
        assert none[key] is None, key


def test_an_empty_edit_set_is_a_record_not_an_error():
    labels, baseline, _, _, _, _ = _known_run()
    empty = EditSet(np.zeros(0, dtype=np.int64), "class_homogeneous_correct", 1, 5, 0, 0)
    record, model = run_experiment(None, np.zeros((6, 3, 32, 32), np.uint8), labels, baseline, empty, RepairSettings(), {})
    assert model is None and not record["repair_successful"]
    assert record["error_message"] == "edit set is empty: the test set has no image of type class_homogeneous_correct in class 1"
    assert record["repair_runtime_seconds"] == 0.0 and record["edit_set_path"] == "" and record["baseline_model_path"] == ""
    empty = EditSet(np.zeros(0, dtype=np.int64), "misclassified", None, 5, 0, 0)
    record, _ = run_experiment(None, np.zeros((6, 3, 32, 32), np.uint8), labels, baseline, empty, RepairSettings(), {})
    assert record["error_message"] == "edit set is empty: the test set has no image of type misclassified"


def test_grid_summary_rows_and_run_records(tmp_path):
    from weightlab.io import write_json

    records = [{"experiment_id": "b", "repair_set_type": "misclassified", "target_class": None, "requested_repair_set_size": 10,
                "repair_successful": True, "extra": 1},
               {"experiment_id": "a", "repair_set_type": "class_homogeneous_correct", "target_class": 2,
                "requested_repair_set_size": 10, "repair_successful": False}]
    summary = grid_summary(records, {"test_accuracy": 0.9})
    assert summary == {"columns": list(COLUMNS), "runs": 2, "repaired": 1, "records": records, "base": {"test_accuracy": 0.9}}
    rows = grid_rows(records)
    assert [r["experiment_id"] for r in rows] == ["a", "b"] and list(rows[0]) == list(COLUMNS) and "extra" not in rows[1]
    assert rows[0]["solver"] is None
    for name, record in zip(("r1", "r2"), records):
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / RUN_RECORD, record | {"provenance": {"seed": 0}})
    assert run_records([tmp_path / "r2", tmp_path / "r1"]) == [records[1], records[0]]
