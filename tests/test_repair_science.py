"""Repair science on constructed cases with known answers, added for the survivors of
`benchmarks/mutation.sh repair` (benchmarks/mutation_survivors.md): the base evaluation, the
edit-set file checks, the grid record, the LP's rows and the solvers' bookkeeping."""

import copy
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from test_repair import _lp_over_the_licence
from torch import nn

from conftest import default_settings
from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.repair.base import base_evaluation, confusion_matrix, evaluate_base_model, train_base_model
from weightlab.repair.core import (
    PATTERN_TOLERANCE,
    EditCheck,
    RepairResult,
    RepairSettings,
    check_edit_points,
    failure_reason,
    full_net_margins,
    head_inputs,
    repair_model,
)
from weightlab.repair.criteria import BASE_ACCURACY_MIN, HYPOTHESIS, MARGIN_TOLERANCE, criteria_json, repair_criteria
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
    write_grid_csv,
)
from weightlab.repair.lp import (
    LinearProgram,
    _with_norm_rows,
    build_repair_lp,
    layer_output_expression,
    linear_layers,
    original_logits,
    relu_patterns,
    resolve_layer,
    split_head,
)
from weightlab.repair.solvers import (
    GUROBI_SIZE_LIMIT,
    GUROBI_STATUS,
    LICENCE_LIMITS,
    SolveResult,
    choose_solver,
    fits_size_limited_licence,
    gurobi_available,
    gurobi_rows,
    solve,
    solve_gurobi,
    solve_highs,
)
from weightlab.stats import mean_interval
from weightlab.vision.data import ImageDataset, ImageSplit, to_float_batch
from weightlab.vision.training import TrainConfig


def _settings(**overrides) -> RepairSettings:
    """A repair's settings: the original study's choices (last layer, margin 2, bound 5, its
    objective), changed where a test says."""
    base = dict(layer="last", margin=2.0, param_bound=5.0, solver="auto", objective="linf+l1_normalized", time_limit=None, threads=1)
    return RepairSettings(**{**base, **overrides})


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
    empty_class = base_evaluation(np.array([0, 0, 1]), np.array([0, 1, 1]), ["a", "b", "c"])  # class c has no image
    assert empty_class["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.0}


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
    with pytest.raises(InputError, match=message) as refused:
        read_edit_set(_edit_file(tmp_path, **changes), LABELS, PREDICTIONS)
    assert "and re-run, Snakemake draws it again (rule repair_editset)" in str(refused.value)


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
    wrong_class["indices"] = [5]  # misclassified, of class 2
    (tmp_path / "c.json").write_text(json.dumps(wrong_class))
    edit_set = read_edit_set(tmp_path / "c.json", LABELS, PREDICTIONS)
    assert edit_set.target_class == 2 and edit_set.set_type == "class_homogeneous_incorrect" and edit_set.indices.tolist() == [5]


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
    zeros = np.zeros(3, dtype=np.int64)  # one class only: class 1 does not exist
    with pytest.raises(InputError, match=r"target class 1 is outside 0\.\.0"):
        candidates("class_homogeneous_correct", zeros, zeros, 1)
    assert candidates("misclassified", zeros[:0], zeros[:0]).tolist() == []  # an empty split has no candidates
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
    settings = _settings(layer="last", margin=0.5, param_bound=3.0, objective="linf")
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
    pathless = experiment_record(edit_set, labels, baseline, settings, result, repaired, check, 1.5, {})
    assert pathless["repair_successful"] and pathless["repaired_model_path"] == "" and pathless["edit_set_path"] == ""
    silent = experiment_record(edit_set, labels, baseline, settings, None, None, None, 0.0, {})
    assert silent["error_message"] == "" and silent["layer"] == "last"


def test_a_grid_record_of_a_failed_or_absent_repair_says_why():
    labels, baseline, repaired, edit_set, result, check = _known_run()
    paths = run_paths("e.json", "base.pt", "r")
    settings = _settings(layer="fc2")
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
    record, model = run_experiment(None, np.zeros((6, 3, 32, 32), np.uint8), labels, baseline, empty, _settings(), {})
    assert model is None and not record["repair_successful"]
    assert record["error_message"] == "edit set is empty: the test set has no image of type class_homogeneous_correct in class 1"
    assert record["repair_runtime_seconds"] == 0.0 and record["edit_set_path"] == "" and record["baseline_model_path"] == ""
    empty = EditSet(np.zeros(0, dtype=np.int64), "misclassified", None, 5, 0, 0)
    record, _ = run_experiment(None, np.zeros((6, 3, 32, 32), np.uint8), labels, baseline, empty, _settings(), {})
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


# ----------------------------------------------------------------------------- solvers

needs_gurobi = pytest.mark.skipif(not gurobi_available(), reason="gurobipy is not installed")


def _two_variable_lp(sign: float) -> LinearProgram:
    """minimise sign * (x0 + x1) s.t. x0 + x1 >= 1, x0 - x1 = 0, x0 <= 0.8, 0.6 <= x1 <= 0.7 and
    0 <= x <= 10: the optimum is (0.6, 0.6) = 1.2 for sign +1 (the ranged row's lower end binds)
    and (0.7, 0.7) = -1.4 for sign -1 (its upper end binds). One row of each kind Gurobi counts:
    lower-only, equality, upper-only, ranged (twice): 5 rows."""
    matrix = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, -1.0], [1.0, 0.0], [0.0, 1.0]]))
    return LinearProgram(np.array([sign, sign]), matrix, np.array([1.0, 0.0, -np.inf, 0.6]), np.array([np.inf, 0.0, 0.8, 0.7]),
                         np.zeros(2), np.full(2, 10.0), num_params=1)


@pytest.mark.parametrize("solver", ["highs", pytest.param("gurobi", marks=needs_gurobi)])
def test_both_solvers_honour_every_kind_of_row(solver):
    for sign, optimum, x in ((1.0, 1.2, 0.6), (-1.0, -1.4, 0.7)):
        result = solve(_two_variable_lp(sign), solver)
        assert result.solver == solver and result.status == "Optimal" and result.optimal
        assert result.objective == pytest.approx(optimum, abs=1e-7) and result.x == pytest.approx([x, x], abs=1e-7)
        assert result.choice == "requested (2 variables, 5 constraints)" and result.seconds > 0
    capped = _two_variable_lp(-1.0)
    capped = LinearProgram(capped.cost, capped.matrix, capped.row_lower, capped.row_upper, capped.col_lower, np.full(2, 0.65), 1)
    result = solve(capped, solver)  # the columns' upper bound binds before the ranged row's
    assert result.objective == pytest.approx(-1.3, abs=1e-7) and result.x == pytest.approx([0.65, 0.65], abs=1e-7)
    infeasible = _two_variable_lp(1.0)
    infeasible = LinearProgram(infeasible.cost, infeasible.matrix, infeasible.row_lower, np.array([np.inf, 0.0, 0.5, 0.7]),
                               infeasible.col_lower, infeasible.col_upper, 1)  # x0 <= 0.5 but x1 = x0 >= 0.6
    result = solve(infeasible, solver)
    assert not result.optimal and result.x is None and result.objective is None
    assert failure_reason(result, 3, "fc", 1.0, 2.0).startswith(f"LP infeasible ({solver}: Infeasible")


def test_highs_reports_its_iterations_and_obeys_a_time_limit():
    lp = build_repair_lp(split_head(_zero_head(20, 5), "fc", torch.randn(10, 20, generator=torch.Generator().manual_seed(0))),
                         np.arange(10) % 5, 1.0, 5.0)
    import time

    before = time.perf_counter()
    result = solve_highs(lp, threads=0, time_limit=60.0)
    wall = time.perf_counter() - before
    assert result.optimal and result.barrier_iterations is None and result.iterations >= 1
    assert result.choice == "" and 0 < result.seconds <= wall  # `solve` fills in the choice
    assert set(result.details) == {"crossover_iterations", "simplex_iterations"}
    assert result.details["simplex_iterations"] >= 0 and result.details["crossover_iterations"] >= 0
    stopped = solve_highs(lp, time_limit=1e-9)
    assert stopped.status == "Time limit reached" and not stopped.optimal and stopped.x is None


@needs_gurobi
def test_gurobi_records_its_barrier_and_presolve():
    result = solve_gurobi(_two_variable_lp(1.0), threads=0, time_limit=30.0)
    assert result.optimal and result.iterations == result.barrier_iterations and result.barrier_iterations >= 0
    assert set(result.details) == {"simplex_iterations", "gurobi_runtime", "solved_in_presolve"}
    assert result.details["gurobi_runtime"] >= 0 and result.details["solved_in_presolve"] == (
        result.barrier_iterations == 0 and result.details["simplex_iterations"] == 0)
    assert choose_solver(_two_variable_lp(1.0), "auto") == ("gurobi", "auto: gurobipy tried first (2 variables, 5 constraints)")


@needs_gurobi
def test_gurobi_results_carry_their_own_time_no_choice_yet_and_presolve_only_when_solved():
    import time

    before = time.perf_counter()
    result = solve_gurobi(_two_variable_lp(1.0))
    wall = time.perf_counter() - before
    assert result.optimal and result.choice == "" and 0 < result.seconds <= wall  # `solve` fills in the choice
    infeasible = _two_variable_lp(1.0)
    infeasible = LinearProgram(infeasible.cost, infeasible.matrix, infeasible.row_lower, np.array([np.inf, 0.0, 0.5, 0.7]),
                               infeasible.col_lower, infeasible.col_upper, 1)
    result = solve_gurobi(infeasible)
    assert not result.optimal and result.details["solved_in_presolve"] is False  # presolve proves infeasibility: not a solve


@needs_gurobi
def test_a_gurobi_refusal_is_a_failed_gurobi_result_that_names_the_licence_limit():
    import time

    lp = _lp_over_the_licence()  # 2011 variables: over the size-limited licence
    before = time.perf_counter()
    result = solve_gurobi(lp)
    wall = time.perf_counter() - before
    if result.status != "Error":
        pytest.skip("a full Gurobi licence takes the model")
    assert (result.solver, result.optimal, result.x, result.objective, result.iterations, result.barrier_iterations) == (
        "gurobi", False, None, None, None, None)
    assert result.choice == "" and 0 < result.seconds <= wall
    assert result.message.startswith(f"gurobipy refused the model (error 10010: {LICENCE_LIMITS[10010]}): ")
    assert result.details == {"gurobi_error_code": 10010, "licence_limit": LICENCE_LIMITS[10010]}
    # any other refusal (here a negative time limit, error 10008) names its code and no licence limit
    other = solve_gurobi(_two_variable_lp(1.0), time_limit=-1.0)
    assert other.status == "Error" and other.message.startswith("gurobipy refused the model (error 10008): ")
    assert other.details == {"gurobi_error_code": 10008, "licence_limit": None}


def test_gurobi_is_unavailable_when_gurobipy_cannot_be_imported(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gurobipy", None)  # `import gurobipy` raises ImportError
    assert gurobi_available() is False
    assert choose_solver(_two_variable_lp(1.0), "auto") == ("highs", "auto: gurobipy not installed (2 variables, 5 constraints)")


def test_gurobi_counts_and_the_size_limited_licence_at_its_edge():
    assert gurobi_rows(_two_variable_lp(1.0)) == 5
    equalities = LinearProgram(np.zeros(2), sp.csr_matrix(np.eye(2)), np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                               np.zeros(2), np.ones(2), 1)
    assert gurobi_rows(equalities) == 2  # an equality row is one constraint, not a lower and an upper one
    assert GUROBI_STATUS[2] == "Optimal" and GUROBI_STATUS[3] == "Infeasible" and GUROBI_STATUS[9] == "Time limit"

    def sized(num_vars, num_rows):
        return LinearProgram(np.zeros(num_vars), sp.csr_matrix((num_rows, num_vars)), np.zeros(num_rows), np.full(num_rows, np.inf),
                             np.zeros(num_vars), np.ones(num_vars), 1)

    assert fits_size_limited_licence(sized(GUROBI_SIZE_LIMIT, GUROBI_SIZE_LIMIT))
    assert not fits_size_limited_licence(sized(GUROBI_SIZE_LIMIT + 1, 1))
    assert not fits_size_limited_licence(sized(1, GUROBI_SIZE_LIMIT + 1))
    assert GUROBI_SIZE_LIMIT == 2000


def test_failure_reasons_name_what_went_wrong():
    infeasible = _solve_result(solver="gurobi", status="Infeasible or unbounded", optimal=False)
    assert failure_reason(infeasible, 4, "fc2", 2.0, 5.0) == (
        "LP infeasible (gurobi: Infeasible or unbounded): no change of at most 5.0 per parameter of layer fc2 gives all 4 edit "
        "points a margin of 2.0")
    refused = _solve_result(solver="gurobi", status="Error", optimal=False, message="gurobipy refused the model")
    assert failure_reason(refused, 4, "fc2", 2.0, 5.0) == "gurobipy refused the model"
    slow = _solve_result(status="Time limit reached", optimal=False, seconds=12.34)
    assert failure_reason(slow, 4, "fc2", 2.0, 5.0) == "highs stopped with status 'Time limit reached' after 12.3 s"


# ----------------------------------------------------------------------------- the LP


def _zero_head(width_in: int = 1, classes: int = 2) -> nn.Sequential:
    head = nn.Sequential(OrderedDict([("fc", nn.Linear(width_in, classes))]))
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.zero_()
    return head


@pytest.mark.parametrize("objective, num_vars, num_rows, t_upper, l1_cost", [
    ("linf", 5, 1 + 8, 3.0, None), ("linf+l1", 9, 1 + 8 + 8, 3.0, 1 / 4), ("linf+l1_normalized", 11, 1 + 8 + 8 + 4 + 2, np.inf, 1 / 6),
])
def test_the_lp_of_one_point_has_the_known_columns_rows_and_costs(objective, num_vars, num_rows, t_upper, l1_cost):
    lp = build_repair_lp(split_head(_zero_head(), "fc", torch.ones(1, 1)), np.array([0]), 1.0, 3.0, objective)
    assert (lp.num_vars, lp.num_constraints, lp.num_params, lp.t_index) == (num_vars, num_rows, 4, 4)
    expected_cost = np.zeros(num_vars)
    expected_cost[4] = 1.0
    if l1_cost:
        expected_cost[5:] = l1_cost
    assert lp.cost == pytest.approx(expected_cost)
    assert lp.col_lower[:5].tolist() == [-3.0] * 4 + [0.0] and lp.col_upper[:5].tolist() == [3.0] * 4 + [t_upper]
    if objective != "linf":
        assert lp.col_lower[5:9].tolist() == [0.0] * 4 and lp.col_upper[5:9].tolist() == [3.0] * 4
    if objective == "linf+l1_normalized":
        assert lp.col_lower[9:].tolist() == [0.0] * 2 and lp.col_upper[9:].tolist() == [np.inf] * 2
    margin = lp.matrix[0].toarray().ravel()  # (w0 + b0) - (w1 + b1) >= 1
    assert margin[:5].tolist() == [1.0, -1.0, 1.0, -1.0, 0.0] and lp.row_lower[0] == 1.0 and lp.row_upper[0] == np.inf
    # a feasible point and an infeasible one, checked against every row
    spread = np.zeros(num_vars)
    spread[:5] = [0.25, -0.25, 0.25, -0.25, 0.25]
    if objective != "linf":
        spread[5:9] = 0.25
    if objective == "linf+l1_normalized":
        spread[4] = spread[9:] = 0.5  # |logit changes| = 0.5 each, and t bounds them too

    def feasible(x):
        rows = lp.matrix @ x
        return bool(np.all(rows >= lp.row_lower - 1e-12) & np.all(rows <= lp.row_upper + 1e-12)
                    & np.all(x >= lp.col_lower) & np.all(x <= lp.col_upper))

    assert feasible(spread)
    assert lp.cost @ spread == pytest.approx({"linf": 0.25, "linf+l1": 0.5, "linf+l1_normalized": 5 / 6}[objective])
    for index, value in ((4, 0.2), (0, 0.2)):  # t below a change; a change too small for the margin
        worse = spread.copy()
        worse[index] = value
        assert not feasible(worse)
    if objective == "linf+l1_normalized":
        for index in (9, 10):  # u_j below the logit change it bounds
            worse = spread.copy()
            worse[index] = 0.4
            assert not feasible(worse)


def test_unknown_objectives_and_labels_outside_the_classes_are_refused():
    split = split_head(_zero_head(), "fc", torch.ones(1, 1))
    with pytest.raises(InputError, match="unknown repair.lp.objective 'l2'"):
        build_repair_lp(split, np.array([0]), 1.0, 3.0, "l2")
    for label in (-1, 2):
        with pytest.raises(InputError, match=r"edit labels must lie in 0\.\.1"):
            build_repair_lp(split, np.array([label]), 1.0, 3.0)
    assert build_repair_lp(split, np.array([1]), 1.0, 3.0).matrix[0].toarray().ravel()[:4].tolist() == [-1.0, 1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="needs the logit-change expression"):
        _with_norm_rows([], 4, 5, 3.0, [], [], "linf+l1_normalized")


def test_the_layer_output_expression_of_two_points_by_hand():
    inputs = np.array([[1.0, 2.0], [3.0, -1.0]])
    weight, bias = np.array([[1.0, 0.0], [0.5, -1.0]]), np.array([0.1, -0.2])
    matrix, constant = layer_output_expression(inputs, weight, bias, num_vars=7)
    # columns: w00 w01 w10 w11 b0 b1 t; rows: z_{p, j}
    assert matrix.toarray().tolist() == [
        [1, 2, 0, 0, 1, 0, 0], [0, 0, 1, 2, 0, 1, 0], [3, -1, 0, 0, 1, 0, 0], [0, 0, 3, -1, 0, 1, 0]]
    assert constant == pytest.approx([1.1, -1.7, 3.1, 2.3])


class _Scale(nn.Module):
    def forward(self, x):
        return 2 * x


def test_the_head_split_runs_earlier_modules_in_eval_mode_and_keeps_the_rest():
    torch.manual_seed(0)
    head = nn.Sequential(OrderedDict([("fc1", nn.Linear(3, 4)), ("drop", nn.Dropout(0.9)), ("relu1", nn.ReLU()),
                                      ("fc2", nn.Linear(4, 3)), ("relu2", nn.ReLU()), ("id", nn.Identity()), ("fc3", nn.Linear(3, 2))]))
    head.train()
    inputs = torch.randn(5, 3)
    split = split_head(head, "fc2", inputs)
    with torch.no_grad():
        expected = torch.relu(head.fc1(inputs)).double().numpy()
    assert split.layer_name == "fc2" and split.layer is head.fc2 and split.layer_inputs.dtype == np.float64
    assert split.layer_inputs == pytest.approx(expected, abs=1e-6)
    assert [name for name, _ in split.downstream] == ["relu2", "id", "fc3"]
    assert linear_layers(head) == ["fc1", "fc2", "fc3"] and resolve_layer(head, "last") == "fc3"
    (patterns,) = relu_patterns(split)
    with torch.no_grad():
        pre = head.fc2(torch.from_numpy(expected).float())
        assert patterns == pytest.approx(pre.double().numpy(), abs=1e-6)
        assert original_logits(split) == pytest.approx(head.eval()(inputs).double().numpy().ravel(), abs=1e-5)
    with pytest.raises(InputError, match="no Linear layer"):
        resolve_layer(nn.Sequential(nn.ReLU()), "last")
    odd = nn.Sequential(OrderedDict([("fc1", nn.Linear(3, 3)), ("scale", _Scale()), ("fc2", nn.Linear(3, 2))]))
    with pytest.raises(InputError, match=r"module scale \(_Scale\) follows the repaired layer"):
        split_head(odd, "fc1", inputs)
    assert split_head(odd, "fc2", inputs).layer_inputs == pytest.approx(2 * odd.fc1(inputs).detach().double().numpy(), abs=1e-6)


# ----------------------------------------------------------------------------- repairing a model


class _Flat(nn.Module):
    """Features: flatten and scale the uint8 image to 12 numbers; classifier: the given head."""

    def __init__(self, head: nn.Sequential) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


def _hidden_head(seed: int = 2) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([("drop", nn.Dropout(0.5)), ("fc1", nn.Linear(12, 8)), ("relu1", nn.ReLU()),
                                      ("fc2", nn.Linear(8, 3))]))


def test_head_inputs_are_the_classifiers_inputs_in_eval_mode_batch_by_batch():
    model = _Flat(_hidden_head()).train()
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    inputs = head_inputs(model, images, batch_size=2)
    with torch.no_grad():
        expected = torch.flatten(model.pool(to_float_batch(images, "cpu")), 1)
    assert inputs.shape == (5, 12) and torch.allclose(inputs, expected)
    assert not model.training
    assert head_inputs(model, images[:0]).numel() == 0
    assert full_net_margins(model, images[:0], np.zeros(0, dtype=np.int64)).shape == (0,)
    labels = np.array([0, 1, 2, 1, 0])
    with torch.no_grad():
        logits = model(to_float_batch(images, "cpu")).double().numpy()
    expected_margins = [logits[i, y] - max(logits[i, c] for c in range(3) if c != y) for i, y in enumerate(labels)]
    assert full_net_margins(model, images, labels, batch_size=2) == pytest.approx(expected_margins, abs=1e-6)


def test_a_repaired_copy_changes_the_chosen_layer_by_the_lps_solution_and_nothing_else():
    model = _Flat(_hidden_head()).eval()
    images = np.random.default_rng(1).integers(0, 256, (4, 3, 4, 4), dtype=np.uint8)
    with torch.no_grad():
        labels = ((model(to_float_batch(images, "cpu")).argmax(1) + 1) % 3).numpy()
    before = copy.deepcopy(model.state_dict())
    settings = _settings(layer="fc1", margin=0.2, param_bound=5.0, solver="highs", objective="linf")
    model.train()
    result, repaired, check = repair_model(model, images, labels, settings)
    assert result.successful and result.reason == "" and result.layer == "fc1"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert all(module.training for module in model.modules())  # and keeps its mode
    model.eval()
    assert result.solve.objective == pytest.approx(result.linf, abs=1e-7)  # the objective asked for: linf
    x = result.solve.x
    assert result.delta_weight.shape == (8, 12) and result.delta_weight == pytest.approx(x[:96].reshape(8, 12))
    assert result.delta_bias == pytest.approx(x[96:104])
    change = repaired.classifier.fc1.weight.detach().double() - model.classifier.fc1.weight.detach().double()
    assert change.numpy() == pytest.approx(result.delta_weight, abs=1e-6)
    assert torch.equal(repaired.classifier.fc2.weight, model.classifier.fc2.weight)
    assert result.linf == pytest.approx(max(np.abs(result.delta_weight).max(), np.abs(result.delta_bias).max()))
    assert check.accuracy == 1.0 and check.min_margin >= 0.2 - 1e-5 and check.pattern_flips == 0
    assert full_net_margins(repaired, images, labels).min() == pytest.approx(check.min_margin, abs=1e-5)
    tight = _settings(layer="fc1", margin=0.2, param_bound=1e-6, solver="highs")
    failed, nothing, no_check = repair_model(model, images, labels, tight)
    assert not failed.successful and nothing is None and no_check is None and failed.linf is None and failed.l1 is None
    assert failed.reason.startswith("LP infeasible (highs: Infeasible)") and "layer fc1" in failed.reason
    hurried = _settings(layer="fc1", margin=0.2, param_bound=5.0, solver="highs", time_limit=1e-9)
    stopped, _, _ = repair_model(model, images, labels, hurried)
    assert not stopped.successful and stopped.solve.status == "Time limit reached"


def test_norms_of_a_change_take_weights_and_biases():
    solved = _solve_result()
    result = RepairResult(True, "", "fc", solved, 1, 1, delta_weight=np.array([[0.5, -1.0]]), delta_bias=np.array([-2.0]))
    assert result.linf == 2.0 and result.l1 == 3.5
    result = RepairResult(True, "", "fc", solved, 1, 1, delta_weight=np.array([[0.5, -3.0]]), delta_bias=np.array([1.0]))
    assert result.linf == 3.0 and result.l1 == 4.5


def test_edit_point_checks_count_margins_accuracy_and_sign_flips():
    original = nn.Sequential(OrderedDict([("fc1", nn.Linear(1, 3)), ("relu", nn.ReLU()), ("fc2", nn.Linear(3, 2))]))
    with torch.no_grad():
        original.fc1.weight.copy_(torch.tensor([[1.0], [1.0], [1.0]]))
        original.fc1.bias.copy_(torch.tensor([0.0, -2.0, 4e-6]))
        original.fc2.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        original.fc2.bias.zero_()
    repaired = copy.deepcopy(original)
    with torch.no_grad():
        # pre-activations before -> after: x = 1: (1, -1, 1) -> (-2, 3, 1); x = 0: (0, -2, 4e-6) -> (-3, 2, -8e-6).
        # Flips: units 0 and 1 at x = 1, unit 1 at x = 0; unit 0 at x = 0 starts on the kink and unit 2
        # at x = 0 stays within the tolerance, so neither counts
        repaired.fc1.bias.copy_(torch.tensor([-3.0, 2.0, -8e-6]))
    inputs = torch.tensor([[1.0], [0.0]])
    # repaired logits: x = 1 -> (relu(-2), relu(3)) = (0, 3); x = 0 -> (0, 2)
    check = check_edit_points(original, repaired, "fc1", inputs, np.array([1, 0]))
    assert check == EditCheck(accuracy=0.5, min_margin=pytest.approx(-2.0), pattern_flips=3)
    empty = check_edit_points(original, repaired, "fc1", inputs[:0], np.zeros(0, dtype=np.int64))
    assert np.isnan(empty.accuracy) and np.isnan(empty.min_margin) and empty.pattern_flips == 0
    assert PATTERN_TOLERANCE == 1e-5


def test_repair_settings_come_from_the_config_block_whole():
    lp = default_settings("repair", "lp")
    assert settings_dataclass(RepairSettings, {**lp, "threads": 1}, "repair.lp") == RepairSettings(**lp, threads=1)
    with pytest.raises(InputError, match=r"repair\.lp.*margin"):
        settings_dataclass(RepairSettings, {k: v for k, v in lp.items() if k != "margin"} | {"threads": 1}, "repair.lp")


# ----------------------------------------------------------------------------- the base model


def test_the_base_model_is_built_for_the_datasets_classes_and_trained_with_a_monitor():
    rng = np.random.default_rng(0)
    train = ImageSplit(rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8), np.arange(12) % 4)
    test = ImageSplit(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), np.array([0, 1, 2, 3, 0, 1]))
    dataset = ImageDataset("toy", ("a", "b", "c", "d"), train, test)

    def trained(seed):
        torch.manual_seed(0)  # the same initial weights: only the batches' order differs between seeds
        return train_base_model(dataset, {"arch": "alexnet", "channels": [2, 2, 2, 2, 2], "hidden": [4, 4]},
                                TrainConfig(**{**default_settings("repair", "train"), "epochs": 2, "batch_size": 6, "lr": 0.5}), monitor_size=3, device=torch.device("cpu"),
                                generator=torch.Generator().manual_seed(seed))

    base = trained(0)
    assert base.arch == "alexnet" and base.arch_kwargs == {"channels": [2, 2, 2, 2, 2], "hidden": [4, 4], "num_classes": 4}
    assert base.model.classifier.fc3.out_features == 4 and [r["epoch"] for r in base.history] == [1, 2]
    for record in base.history:  # the monitor: the first 3 test images
        assert round(record["test_accuracy"] * 3, 9) in (0, 1, 2, 3) and np.isfinite(record["test_loss"])
    assert trained(0).history[-1]["train_loss"] == base.history[-1]["train_loss"]
    assert trained(1).history[-1]["train_loss"] != base.history[-1]["train_loss"]  # the generator shuffles the batches
    evaluation, predictions = evaluate_base_model(base.model, test, dataset.classes, torch.device("cpu"))
    assert predictions.shape == (6,) and evaluation["num_test"] == 6 and evaluation["classes"] == ["a", "b", "c", "d"]
    assert evaluation["test_accuracy"] == pytest.approx(base.test_accuracy) == pytest.approx(float((predictions == test.labels).mean()))
    assert np.asarray(evaluation["confusion_matrix"]).sum() == 6


# ----------------------------------------------------------------------------- the criteria


def _record(name, solved=True, successful=True, margin=2.0, fixed=1.0, drawdown=(0.9, 0.88), **extra):
    record = {"experiment_id": name, "lp_solved": solved, "repair_successful": successful, "edit_min_margin_full_net": margin,
              "edit_accuracy_full_net": fixed, "baseline_accuracy_drawdown_set": drawdown[0],
              "repaired_accuracy_drawdown_set": drawdown[1] if successful else None}
    return record | extra


def _criteria(records, accuracy=0.85, margin=2.0):
    return {c.id: c for c in repair_criteria(records, {"test_accuracy": accuracy} if accuracy is not None else {}, margin)}


def test_repair_criteria_thresholds_at_their_edges():
    runs = [_record("a", margin=0.5 - 1e-4), _record("b", margin=0.5, drawdown=(0.9, 0.85))]
    criteria = _criteria(runs, accuracy=0.8, margin=0.5)
    assert criteria["base_model_learns"].verdict == "pass" and criteria["base_model_learns"].value == 0.8
    assert criteria["base_model_learns"].threshold == ">= 0.8 (ours)" and criteria["base_model_learns"].kind == "precondition"
    assert criteria["repairs_verified_by_forward_pass"].verdict == "pass"
    assert criteria["repairs_verified_by_forward_pass"].value == {"a": 0.5 - 1e-4, "b": 0.5}
    assert criteria["repairs_verified_by_forward_pass"].threshold == (
        "min margin >= repair.margin − 0.0001 = 0.4999 in every successful run")
    assert _criteria(runs, accuracy=0.8 - 1e-9)["base_model_learns"].verdict == "fail"
    assert _criteria([_record("a", margin=2.0 - 2e-4)])["repairs_verified_by_forward_pass"].verdict == "fail"
    missing = _criteria(runs, accuracy=None)["base_model_learns"]
    assert missing.verdict == "not_evaluable" and missing.value is None
    fixed = criteria["feasible_edit_sets_fixed"]
    assert fixed.kind == "expectation" and fixed.value == {"a": 1.0, "b": 1.0} and fixed.verdict == "pass"
    assert fixed.depends_on == ("base_model_learns", "repairs_verified_by_forward_pass")
    assert fixed.reason == "" and criteria["repairs_verified_by_forward_pass"].reason == ""  # judged: nothing to explain
    drawdown = criteria["drawdown_reported"]
    assert drawdown.value == {"runs": {"a": pytest.approx(0.02), "b": pytest.approx(0.05)}, "mean": pytest.approx(0.035)}
    assert drawdown.reason == "reported only; the interval is Student-t over runs" and drawdown.verdict == "pass"
    assert drawdown.interval == pytest.approx(mean_interval([0.02, 0.05])["ci95"])


def test_repair_criteria_say_why_they_cannot_be_judged():
    nothing = _criteria([_record("a", solved=False, successful=False, margin=None, fixed=None)])
    assert nothing["repairs_verified_by_forward_pass"].verdict == "not_evaluable"
    assert nothing["repairs_verified_by_forward_pass"].reason == "no repair was marked successful"
    assert nothing["feasible_edit_sets_fixed"].verdict == "not_evaluable"
    assert nothing["feasible_edit_sets_fixed"].reason == "no LP of the grid was feasible"
    assert nothing["drawdown_reported"].verdict == "not_evaluable" and nothing["drawdown_reported"].reason == "no repaired run"
    assert nothing["drawdown_reported"].value == {"runs": {}, "mean": None}
    unchecked = _criteria([_record("a", margin=None)])
    assert unchecked["repairs_verified_by_forward_pass"].verdict == "not_evaluable"
    assert unchecked["repairs_verified_by_forward_pass"].reason == (
        "a successful run has no whole-network re-check (re-run its repair)")
    # a solved LP whose whole-network check is missing counts as not fixed
    assert _criteria([_record("a"), _record("b", successful=False, fixed=None)])["feasible_edit_sets_fixed"].verdict == "fail"


def test_repair_criteria_read_records_without_the_whole_network_fields():
    """Older records: lp_solved falls back to repair_successful, the fixed share to the edit-set accuracy."""
    old = [{"experiment_id": "a", "repair_successful": True, "repaired_accuracy_edit_set": 1.0, "edit_min_margin_full_net": 2.0,
            "baseline_accuracy_drawdown_set": 0.9, "repaired_accuracy_drawdown_set": 0.9},
           {"experiment_id": "b", "repair_successful": False, "repaired_accuracy_edit_set": None, "edit_min_margin_full_net": None,
            "baseline_accuracy_drawdown_set": 0.9, "repaired_accuracy_drawdown_set": None}]
    criteria = _criteria(old)
    assert criteria["feasible_edit_sets_fixed"].value == {"a": 1.0} and criteria["feasible_edit_sets_fixed"].verdict == "pass"
    assert criteria["drawdown_reported"].value == {"runs": {"a": 0.0}, "mean": 0.0}
    old[0]["repaired_accuracy_edit_set"] = 0.9
    assert _criteria(old)["feasible_edit_sets_fixed"].verdict == "fail"


def test_repair_criteria_document_names_the_study_and_its_verdict():
    document = criteria_json([_record("a")], {"test_accuracy": 0.9}, 2.0)
    assert document["study"] == "repair" and document["hypothesis"] == HYPOTHESIS and document["verdict"] == "held"
    assert [c["id"] for c in document["criteria"]] == [
        "base_model_learns", "repairs_verified_by_forward_pass", "feasible_edit_sets_fixed", "drawdown_reported"]
    assert [c["kind"] for c in document["criteria"]] == ["precondition", "precondition", "expectation", "check"]
    assert BASE_ACCURACY_MIN == 0.8 and MARGIN_TOLERANCE == 1e-4


def test_one_edit_image_is_repaired_and_timed():
    import time

    model = _Flat(_hidden_head()).eval()
    images = np.random.default_rng(3).integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    with torch.no_grad():
        baseline = model(to_float_batch(images, "cpu")).argmax(1).numpy()
    labels = baseline.copy()
    labels[2] = (labels[2] + 1) % 3  # the one image the base model gets wrong
    edit_set = draw_edit_set("misclassified", 1, labels, baseline, seed=0)
    assert edit_set.indices.tolist() == [2]
    settings = _settings(layer="fc2", margin=0.5, param_bound=10.0, solver="highs")
    started = time.perf_counter()
    record, repaired = run_experiment(model, images, labels, baseline, edit_set, settings, run_paths("e.json", "b.pt", "r"))
    elapsed = time.perf_counter() - started
    assert record["repair_successful"] and repaired is not None, record["error_message"]
    assert 0 < record["repair_runtime_seconds"] <= elapsed
    assert record["repaired_accuracy_edit_set"] == 1.0 and record["edit_min_margin_full_net"] >= 0.5 - 1e-5
    assert record["baseline_accuracy_edit_set"] == 0.0 and record["actual_repair_set_size"] == 1
    assert record["edit_min_margin"] >= 0.5 - 1e-5 and record["edit_pattern_flips"] == 0
    assert record["repaired_accuracy_edit_set_lp_head"] == 1.0


def test_a_solved_lp_that_float32_does_not_keep_is_no_repair():
    """Margin 0: the LP's optimum puts some edit points exactly on a tie, which the float32
    forward pass breaks toward the other class: solved, but not repaired."""
    model = _Flat(_hidden_head()).eval()
    images = np.random.default_rng(4).integers(0, 256, (8, 3, 4, 4), dtype=np.uint8)
    with torch.no_grad():
        baseline = model(to_float_batch(images, "cpu")).argmax(1).numpy()
    labels = (baseline + 1) % 3
    edit_set = draw_edit_set("misclassified", 8, labels, baseline, seed=0)
    settings = _settings(layer="fc2", margin=0.0, param_bound=10.0, solver="highs", objective="linf")
    record, repaired = run_experiment(model, images, labels, baseline, edit_set, settings, run_paths("e.json", "b.pt", "r"))
    assert repaired is None and record["lp_solved"] and not record["repair_successful"]
    assert record["error_message"] == ("the LP was solved (Optimal) but a float32 forward pass still misclassifies 2 of 8 edit "
                                       "points (numerical tolerance)")
    assert record["repaired_model_path"] == "" and record["edit_accuracy_full_net"] < 1.0  # ties count as not correct


def test_the_grid_csv_keeps_integer_columns_integer_and_its_header_when_empty(tmp_path):
    rows = [{"experiment_id": "a", "repair_set_type": "class_homogeneous_correct", "target_class": 3, "requested_repair_set_size": 10,
             "gurobi_barrier_iterations": 7, "solver_iterations": None},
            {"experiment_id": "b", "repair_set_type": "misclassified", "target_class": None, "requested_repair_set_size": 10,
             "gurobi_barrier_iterations": None, "solver_iterations": 12}]
    write_grid_csv(tmp_path / "grid.csv", rows)
    lines = (tmp_path / "grid.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    cells = [dict(zip(COLUMNS, line.split(","))) for line in lines[1:]]
    assert [(c["experiment_id"], c["target_class"], c["gurobi_barrier_iterations"], c["solver_iterations"]) for c in cells] == [
        ("a", "3", "7", ""), ("b", "", "", "12")]
    write_grid_csv(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_text().splitlines() == [",".join(COLUMNS)]


def test_a_hidden_neuron_at_exactly_zero_counts_as_inactive_so_the_repair_may_not_raise_it():
    """x = 1; fc1: neuron 0 has weight and bias 0 (pre-activation exactly 0), neuron 1 passes x
    (pre-activation 1); fc2: logit 0 = neuron 1, logit 1 = 10 x neuron 0. Label 1 with margin 1
    needs 10 z0 - z1 >= 1. Neuron 0 is inactive (ReLU's pattern is z > 0), so its output stays 0
    and z1 >= 0 (active): infeasible. Counting z = 0 as active would let the repair raise z0."""
    from weightlab.repair.core import repair_head

    fc1, fc2 = nn.Linear(1, 2), nn.Linear(2, 2)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[0.0], [1.0]]))
        fc1.bias.zero_()
        fc2.weight.copy_(torch.tensor([[0.0, 1.0], [10.0, 0.0]]))
        fc2.bias.zero_()
    head = nn.Sequential(OrderedDict([("fc1", fc1), ("relu1", nn.ReLU()), ("fc2", fc2)]))
    inputs = torch.tensor([[1.0]])
    result = repair_head(head, "fc1", inputs, np.array([1]), margin=1.0, param_bound=1.0, solver="highs")
    assert result.successful is False and result.reason.startswith("LP infeasible (highs: Infeasible")
    with torch.no_grad():
        fc1.bias[0] = 1e-3  # now active: raising it is allowed, and enough
    result = repair_head(head, "fc1", inputs, np.array([1]), margin=1.0, param_bound=1.0, solver="highs")
    assert result.successful


def test_an_empty_edit_set_has_only_the_bound_rows():
    """No edit point: no margin rows, no ReLU links, no logit changes; what is left is the
    objective's rows: ±delta_i <= t and ±delta_i <= s_i for every parameter (fc2: 15, fc1: 16)."""
    head = nn.Sequential(OrderedDict([("fc1", nn.Linear(3, 4)), ("relu", nn.ReLU()), ("fc2", nn.Linear(4, 3))]))
    for layer, params in (("fc2", 15), ("fc1", 16)):
        lp = build_repair_lp(split_head(head, layer, torch.zeros(0, 3)), np.array([], dtype=np.int64), 1.0, 1.0)
        assert (lp.num_vars, lp.num_constraints, lp.num_params) == (2 * params + 1, 4 * params, params)
    with pytest.raises(InputError, match=r"edit labels must lie in 0\.\.2, got 0\.\.3"):
        build_repair_lp(split_head(head, "fc2", torch.zeros(2, 3)), np.array([0, 3]), 1.0, 1.0)


@needs_gurobi
def test_solve_passes_the_time_limit_to_gurobi():
    """A dense random LP (300 columns, 200 rows) that presolve does not finish: optimal without a
    limit, stopped at a limit of 1 ns."""
    rng = np.random.default_rng(0)
    lp = LinearProgram(rng.uniform(0.5, 1.5, 300), sp.csr_matrix(rng.normal(size=(200, 300))), rng.normal(size=200),
                       np.full(200, np.inf), np.zeros(300), np.full(300, 10.0), 1)
    assert solve(lp, "gurobi").status == "Optimal"
    stopped = solve(lp, "gurobi", time_limit=1e-9)
    assert stopped.solver == "gurobi" and stopped.status == "Time limit" and not stopped.optimal and stopped.x is None
