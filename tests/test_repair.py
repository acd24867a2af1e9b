"""Provable repair: the LP on constructed nets with known answers, both solvers, edit sets, the grid."""

import copy
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import default_settings
from weightlab.checkpoints import build_model, load_checkpoint, save_checkpoint
from weightlab.errors import InputError
from weightlab.repair.base import accuracy_on
from weightlab.repair.core import RepairSettings, apply_repair, check_edit_points, full_net_margins, repair_head
from weightlab.repair.criteria import repair_criteria
from weightlab.repair.editsets import EditSet, candidates, draw_edit_set, edit_set_name, experiment_names, parse_target
from weightlab.repair.experiment import COLUMNS, ORIGINAL_COLUMNS, drawdown_indices, run_experiment, write_grid_csv
from weightlab.repair.lp import build_repair_lp, split_head
from weightlab.repair.models import ARCHITECTURES, AlexNet
from weightlab.repair.solvers import GUROBI_SIZE_LIMIT, choose_solver, gurobi_available, solve

# The original study's CSV columns, in its order (the study document, shared/sources/001_*.txt),
# written out here so that a change to weightlab.repair.experiment.ORIGINAL_COLUMNS is caught.
STUDY_COLUMNS = [
    "experiment_id", "timestamp", "repair_set_type", "repair_set_focus", "requested_repair_set_size",
    "edit_set_sizing_strategy", "actual_repair_set_size", "edit_set_path", "target_class", "param_bound",
    "margin", "baseline_model_path", "baseline_accuracy_test_set", "baseline_accuracy_edit_set",
    "repair_runtime_seconds", "gurobi_barrier_iterations", "repair_successful", "repaired_model_path",
    "repaired_accuracy_test_set", "repaired_accuracy_edit_set", "repaired_accuracy_drawdown_set", "error_message",
]
needs_gurobi = pytest.mark.skipif(not gurobi_available(), reason="gurobipy is not installed")


class Holder(nn.Module):
    """A model whose classifier is the given head and whose features pass inputs through."""

    def __init__(self, head: nn.Sequential) -> None:
        super().__init__()
        self.classifier = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def mlp_head(seed: int = 0, widths=(6, 16, 16, 4)) -> nn.Sequential:
    torch.manual_seed(seed)
    a, b, c, d = widths
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(a, b)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(b, c)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(c, d)),
    ]))


def wrong_labels(head: nn.Sequential, inputs: torch.Tensor) -> np.ndarray:
    """A label per point that the head does not predict: every point needs repairing."""
    with torch.no_grad():
        predicted = head(inputs).argmax(1).numpy()
    return (predicted + 1) % head.fc3.out_features


def margins(head: nn.Sequential, inputs: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = head(inputs.float()).double().numpy()
    true = logits[np.arange(len(labels)), labels]
    logits[np.arange(len(labels)), labels] = -np.inf
    return true - logits.max(1)


def applied_change(head: nn.Sequential, repaired: nn.Sequential, layer: str) -> np.ndarray:
    before, after = getattr(head, layer), getattr(repaired, layer)
    return torch.cat([(after.weight - before.weight).flatten(), after.bias - before.bias]).detach().double().numpy()


def single_point_head(inputs=(1.0, 2.0, -1.0), classes: int = 3) -> nn.Sequential:
    layer = nn.Linear(len(inputs), classes)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    return nn.Sequential(OrderedDict([("fc", layer)]))


# ----------------------------------------------------------------------------- LP repair


def test_single_point_repair_has_the_known_optimum():
    # All logits are 0 and the point a = (1, 2, -1) must win by 1: raising row y and lowering the
    # others by t per parameter moves each gap by 2 t (|a|_1 + 1) = 10 t, so t* = 0.1.
    head = single_point_head()
    inputs = torch.tensor([[1.0, 2.0, -1.0]])
    result = repair_head(head, "fc", inputs, np.array([0]), margin=1.0, param_bound=5.0, solver="highs", objective="linf")
    assert result.successful, result.reason
    assert result.solve.objective == pytest.approx(0.1, abs=1e-7)
    assert result.linf == pytest.approx(0.1, abs=1e-7)


def test_last_layer_repair_meets_margin_bound_and_objective():
    head = mlp_head()
    inputs = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    labels = wrong_labels(head, inputs)
    result = repair_head(head, "last", inputs, labels, margin=0.5, param_bound=3.0, solver="highs", objective="linf")
    assert result.successful, result.reason
    assert result.layer == "fc3"
    repaired = apply_repair(Holder(head), result).classifier
    assert margins(repaired, inputs, labels).min() >= 0.5 - 1e-4
    change = applied_change(head, repaired, "fc3")
    assert np.abs(change).max() <= 3.0 + 1e-6
    assert result.solve.objective == pytest.approx(np.abs(change).max(), abs=1e-5)
    assert result.l1 == pytest.approx(np.abs(change).sum(), rel=1e-4)
    for name in ("fc1", "fc2"):  # only the chosen layer moves
        assert torch.equal(getattr(repaired, name).weight, getattr(head, name).weight)


@needs_gurobi
def test_gurobi_and_highs_reach_the_same_objective():
    head = mlp_head(seed=3)
    inputs = torch.randn(12, 6, generator=torch.Generator().manual_seed(4))
    labels = wrong_labels(head, inputs)
    lp = build_repair_lp(split_head(head, "fc3", inputs), labels, 0.5, 3.0)
    assert lp.num_vars <= GUROBI_SIZE_LIMIT and lp.num_constraints <= GUROBI_SIZE_LIMIT
    assert choose_solver(lp, "auto")[0] == "gurobi"
    by_gurobi = repair_head(head, "fc3", inputs, labels, 0.5, 3.0, solver="gurobi")
    by_highs = repair_head(head, "fc3", inputs, labels, 0.5, 3.0, solver="highs")
    assert by_gurobi.successful and by_highs.successful
    assert (by_gurobi.solve.solver, by_highs.solve.solver) == ("gurobi", "highs")
    assert by_gurobi.solve.objective == pytest.approx(by_highs.solve.objective, rel=1e-6, abs=1e-8)
    assert by_gurobi.solve.barrier_iterations is not None and by_highs.solve.barrier_iterations is None


def _lp_over_the_licence():
    # 2010 parameters: 2011 variables under linf, just over the size-limited licence (and a
    # fraction of the solve time of a larger LP: mutation testing runs this test many times)
    head = nn.Sequential(OrderedDict([("fc", nn.Linear(200, 10))]))
    lp = build_repair_lp(split_head(head, "fc", torch.randn(2, 200)), np.array([0, 1]), 1.0, 1.0, objective="linf")
    assert lp.num_vars == GUROBI_SIZE_LIMIT + 11
    return lp


@needs_gurobi
def test_auto_tries_gurobi_and_falls_back_to_highs_when_the_licence_refuses():
    lp = _lp_over_the_licence()
    assert choose_solver(lp, "auto")[0] == "gurobi"  # decided by trying, not by size
    result = solve(lp, "auto")
    if result.solver == "gurobi":  # a full licence takes the model: nothing to fall back from
        assert result.optimal and "fell back" not in result.choice
        return
    assert result.solver == "highs" and result.optimal
    assert "fell back to highs" in result.choice and "10010" in result.choice
    assert result.details["licence_limit"].startswith("size-limited licence")
    assert result.details["gurobi_refusal"].startswith("gurobipy refused the model (error 10010: size-limited licence")


@needs_gurobi
def test_auto_keeps_gurobi_when_the_licence_takes_the_model_and_flags_presolve():
    head = mlp_head(seed=3)
    inputs = torch.randn(12, 6, generator=torch.Generator().manual_seed(4))
    lp = build_repair_lp(split_head(head, "fc3", inputs), wrong_labels(head, inputs), 0.5, 3.0)
    result = solve(lp, "auto")
    assert result.solver == "gurobi" and result.optimal and "fell back" not in result.choice
    assert result.details["solved_in_presolve"] == (result.barrier_iterations == 0 and result.details["simplex_iterations"] == 0)


def test_requested_solvers_are_checked_and_highs_solves_beyond_the_licence():
    lp = _lp_over_the_licence()
    result = solve(lp, "highs")
    assert result.solver == "highs" and result.optimal and result.choice.startswith("requested")
    with pytest.raises(InputError, match="repair.lp.solver"):
        choose_solver(lp, "cplex")


def test_an_edit_set_beyond_the_bound_is_an_unsuccessful_result():
    import time

    head = single_point_head()
    inputs = torch.tensor([[1.0, 2.0, -1.0]])
    before = time.perf_counter()
    result = repair_head(head, "fc", inputs, np.array([0]), margin=1.0, param_bound=0.05, solver="highs")  # needs 0.1
    wall = time.perf_counter() - before
    assert result.successful is False and result.solve.solver == "highs" and result.layer == "fc"
    assert result.reason == (f"LP infeasible (highs: {result.solve.status}): no change of at most 0.05 per parameter "
                             "of layer fc gives all 1 edit points a margin of 1.0")
    lp = build_repair_lp(split_head(head, "fc", inputs), np.array([0]), 1.0, 0.05)
    assert (result.num_vars, result.num_constraints) == (lp.num_vars, lp.num_constraints)
    assert 0 < result.build_seconds < wall
    assert result.delta_weight is None


@needs_gurobi
def test_contradictory_edit_points_are_infeasible_with_gurobi_too():
    head = single_point_head()
    inputs = torch.tensor([[1.0, 2.0, -1.0], [1.0, 2.0, -1.0]])  # one image, two labels
    result = repair_head(head, "fc", inputs, np.array([0, 1]), margin=0.1, param_bound=100.0, solver="gurobi")
    assert not result.successful and "infeasible" in result.reason


@pytest.mark.parametrize("layer, seed, points", [("fc2", 0, 8), ("fc1", 3, 3)])
def test_non_last_layer_repair_keeps_the_assumed_activation_patterns(layer, seed, points):
    # Each point must move to its runner-up class. Fixing two ReLU patterns (fc1) leaves far
    # fewer feasible changes than one (fc2), so fc1 gets a smaller edit set.
    head = mlp_head(seed=seed, widths=(6, 24, 24, 4))
    inputs = torch.randn(points, 6, generator=torch.Generator().manual_seed(seed + 10))
    with torch.no_grad():
        labels = head(inputs).argsort(1)[:, -2].numpy()
    result = repair_head(head, layer, inputs, labels, margin=0.3, param_bound=5.0, solver="highs")
    assert result.successful, result.reason
    repaired = apply_repair(Holder(head), result).classifier
    assert margins(repaired, inputs, labels).min() >= 0.3 - 1e-4
    assert np.abs(applied_change(head, repaired, layer)).max() <= 5.0 + 1e-6
    with torch.no_grad():  # every downstream ReLU sees the same sign pattern as before
        z_before, z_after = head.fc2(head.relu1(head.fc1(inputs))), repaired.fc2(repaired.relu1(repaired.fc1(inputs)))
        if layer == "fc1":
            h_before, h_after = head.fc1(inputs), repaired.fc1(inputs)
            decided = (h_before.abs() > 1e-5) & (h_after.abs() > 1e-5)
            assert torch.equal((h_before > 0)[decided], (h_after > 0)[decided])
    decided = (z_before.abs() > 1e-5) & (z_after.abs() > 1e-5)
    assert torch.equal((z_before > 0)[decided], (z_after > 0)[decided])
    assert check_edit_points(head, repaired, layer, inputs, labels).pattern_flips == 0


def test_layers_that_cannot_be_repaired_are_named():
    head = mlp_head()
    with pytest.raises(InputError, match="not a linear layer"):
        split_head(head, "relu1", torch.randn(2, 6))


# ----------------------------------------------------------------------------- edit sets


LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 1])
PREDICTIONS = np.array([0, 1, 2, 1, 1, 0, 2, 0, 0, 2, 0, 2])


def test_edit_set_membership_for_each_type():
    assert candidates("misclassified", LABELS, PREDICTIONS).tolist() == [1, 2, 5, 7, 8, 11]
    assert candidates("class_homogeneous_correct", LABELS, PREDICTIONS, 2).tolist() == [6, 9]
    assert candidates("class_homogeneous_incorrect", LABELS, PREDICTIONS, 2).tolist() == [7, 8]
    assert candidates("class_homogeneous_incorrect", LABELS, PREDICTIONS, 0).tolist() == [1, 2]
    drawn = draw_edit_set("class_homogeneous_correct", 5, LABELS, PREDICTIONS, seed=0, target_class=0)
    assert set(drawn.indices) <= {0, 10} and drawn.focus == "correct_only"


def test_flexible_sizing_takes_what_exists_and_records_it():
    edit_set = draw_edit_set("misclassified", 100, LABELS, PREDICTIONS, seed=0)
    assert edit_set.requested_size == 100 and edit_set.actual_size == 6 == edit_set.available
    assert sorted(edit_set.indices.tolist()) == [1, 2, 5, 7, 8, 11]
    empty = draw_edit_set("class_homogeneous_correct", 10, np.array([1, 1]), np.array([0, 0]), seed=0, target_class=1)
    assert empty.actual_size == 0
    data = edit_set.to_json()
    assert data["sizing_strategy"] == "flexible" and data["actual_size"] == 6
    restored = EditSet.from_json(data)
    assert np.array_equal(restored.indices, edit_set.indices) and restored.name == edit_set.name == "misclassified-all-n100"


def test_edit_sets_are_reproducible_and_nested():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 10, 2000), rng.integers(0, 10, 2000)
    small = draw_edit_set("misclassified", 10, labels, predictions, seed=7)
    again = draw_edit_set("misclassified", 10, labels, predictions, seed=7)
    large = draw_edit_set("misclassified", 50, labels, predictions, seed=7)
    other = draw_edit_set("misclassified", 10, labels, predictions, seed=8)
    assert np.array_equal(small.indices, again.indices)
    assert set(small.indices) <= set(large.indices)
    assert not np.array_equal(small.indices, other.indices)
    assert all(predictions[i] != labels[i] for i in large.indices)


def test_edit_set_requests_are_checked():
    with pytest.raises(InputError, match="target class"):
        draw_edit_set("class_homogeneous_incorrect", 5, LABELS, PREDICTIONS, seed=0)
    with pytest.raises(InputError, match="spans all classes"):
        draw_edit_set("misclassified", 5, LABELS, PREDICTIONS, seed=0, target_class=1)
    with pytest.raises(InputError, match="unknown edit-set type"):
        draw_edit_set("random", 5, LABELS, PREDICTIONS, seed=0)
    assert edit_set_name("class_homogeneous_incorrect", 3, 50) == "class_homogeneous_incorrect-c3-n50"
    assert parse_target("all") is None and parse_target("c3") == 3
    assert experiment_names(["misclassified", "class_homogeneous_incorrect"], [0, 6], [10]) == [
        "misclassified-all-n10", "class_homogeneous_incorrect-c0-n10", "class_homogeneous_incorrect-c6-n10",
    ]


# ----------------------------------------------------------------------------- experiments and grid


class TinyImageNet(nn.Module):
    """Average-pooled 2x2 RGB -> 12 features -> the MLP head: a model run_experiment can repair."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = mlp_head(seed=11, widths=(12, 32, 32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 2), 1))


def test_grid_goes_on_past_a_failed_repair_and_has_exactly_the_columns(tmp_path):
    from weightlab.vision.training import evaluate

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    model = TinyImageNet().eval()
    baseline = evaluate(model, images, np.zeros(40, dtype=np.int64), torch.device("cpu")).predictions
    labels = (baseline + 1 + rng.integers(0, 2, 40)) % 3  # every image misclassified
    edit_set = draw_edit_set("misclassified", 4, labels, baseline, seed=0)
    paths = {"edit_set": "e.json", "baseline": "base.pt", "repaired": "rep.pt"}
    lp = {**default_settings("repair", "lp"), "layer": "last", "margin": 0.1, "solver": "highs", "threads": 1}
    loose, tight = RepairSettings(**{**lp, "param_bound": 50.0}), RepairSettings(**{**lp, "param_bound": 1e-6})
    ok, repaired = run_experiment(model, images, labels, baseline, edit_set, loose, paths)
    failed, nothing = run_experiment(model, images, labels, baseline, edit_set, tight, paths)
    assert ok["repair_successful"] and ok["repaired_accuracy_edit_set"] == 1.0, ok["error_message"]
    assert repaired is not None and ok["repaired_model_path"] == "rep.pt"
    assert not failed["repair_successful"] and "infeasible" in failed["error_message"] and nothing is None
    assert failed["repaired_model_path"] == "" and failed["repaired_accuracy_test_set"] is None
    assert ok["baseline_accuracy_edit_set"] == 0.0 and ok["actual_repair_set_size"] == 4
    # the whole-network float32 re-check: every edit point keeps the LP's margin
    assert ok["lp_solved"] and ok["edit_min_margin_full_net"] >= 0.1 - 1e-6 and ok["edit_accuracy_full_net"] == 1.0
    assert not failed["lp_solved"] and failed["edit_min_margin_full_net"] is None
    criteria = {c.id: c for c in repair_criteria([ok, failed], {"test_accuracy": 0.9}, margin=0.1)}
    assert criteria["repairs_verified_by_forward_pass"].verdict == "pass" and criteria["feasible_edit_sets_fixed"].verdict == "pass"
    path = tmp_path / "experiment_data.csv"
    write_grid_csv(path, [ok, failed])
    table = pd.read_csv(path)
    assert list(table.columns) == STUDY_COLUMNS + ["solver", "solver_iterations"]
    assert list(ORIGINAL_COLUMNS) == STUDY_COLUMNS and list(COLUMNS) == list(table.columns)
    assert sorted(table["repair_successful"].tolist()) == [False, True]
    assert set(table["solver"]) == {"highs"}


def test_full_net_margins_on_a_known_linear_net():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3, bias=True))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([2.0, 0.5, -1.0]))
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    assert full_net_margins(net, images, np.array([0, 2])) == pytest.approx([1.5, -3.0])


def _run(name, solved, successful, margin, fixed, drawdown=(0.9, 0.88)):
    return {"experiment_id": name, "lp_solved": solved, "repair_successful": successful, "edit_min_margin_full_net": margin,
            "edit_accuracy_full_net": fixed, "baseline_accuracy_drawdown_set": drawdown[0],
            "repaired_accuracy_drawdown_set": drawdown[1] if successful else None}


def test_repair_criteria_preconditions_gate_the_expectation():
    from weightlab.verdicts import study_verdict

    runs = [_run("a", True, True, 2.0, 1.0), _run("b", True, True, 2.0, 1.0, (0.9, 0.86)), _run("c", False, False, None, None)]
    good = {c.id: c for c in repair_criteria(runs, {"test_accuracy": 0.85}, margin=2.0)}
    assert [good[k].verdict for k in ("base_model_learns", "repairs_verified_by_forward_pass", "feasible_edit_sets_fixed")] == ["pass"] * 3
    drawdown = good["drawdown_reported"]
    assert drawdown.kind == "check" and drawdown.value["mean"] == pytest.approx(0.03) and drawdown.interval[0] < 0.03 < drawdown.interval[1]
    assert study_verdict(list(good.values()))["verdict"] == "held"
    slipped = [_run("a", True, True, 2.0 - 1e-3, 1.0), runs[2]]  # the LP claimed the margin, the network does not keep it
    judged = study_verdict(repair_criteria(slipped, {"test_accuracy": 0.85}, margin=2.0))
    assert judged["verdict"] == "not testable" and "repairs_verified_by_forward_pass" in judged["reason"]
    weak = study_verdict(repair_criteria(runs, {"test_accuracy": 0.5}, margin=2.0))
    assert weak["verdict"] == "not testable" and "base_model_learns" in weak["reason"]
    unfixed = [_run("a", True, False, 1.5, 0.9), _run("b", True, True, 2.0, 1.0)]
    assert study_verdict(repair_criteria(unfixed, {"test_accuracy": 0.85}, margin=2.0))["verdict"] == "not held"


# ----------------------------------------------------------------------------- the architecture


def test_alexnet_shapes_layers_and_checkpoint(tmp_path):
    model = build_model(ARCHITECTURES, "alexnet", channels=[4, 8, 8, 8, 8], hidden=[16, 12], num_classes=10)
    assert isinstance(model, AlexNet)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert [n for n, m in model.classifier.named_children() if isinstance(m, nn.Linear)] == ["fc1", "fc2", "fc3"]
    assert sum(isinstance(m, nn.Conv2d) for m in model.features) == 5
    save_checkpoint(tmp_path / "a.pt", model, "alexnet", {"channels": [4, 8, 8, 8, 8], "hidden": [16, 12]})
    loaded, payload = load_checkpoint(tmp_path / "a.pt", ARCHITECTURES)
    assert payload["arch"] == "alexnet" and torch.equal(loaded.classifier.fc3.weight, model.classifier.fc3.weight)
    with pytest.raises(InputError, match="5 conv widths"):
        AlexNet(channels=[4, 4], hidden=[4, 4])


def test_alexnet_is_five_conv_relu_layers_with_three_pools_then_three_linear_layers_by_hand():
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = AlexNet(channels=(2, 3, 4, 5, 6), hidden=(7, 8), num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    c = [m for m in model.features if isinstance(m, nn.Conv2d)]
    h = F.max_pool2d(F.relu(F.conv2d(x, c[0].weight, c[0].bias, stride=2, padding=1)), 2)  # 16 -> 8
    h = F.max_pool2d(F.relu(F.conv2d(h, c[1].weight, c[1].bias, padding=1)), 2)  # 4
    h = F.relu(F.conv2d(h, c[2].weight, c[2].bias, padding=1))
    h = F.relu(F.conv2d(h, c[3].weight, c[3].bias, padding=1))
    h = F.max_pool2d(F.relu(F.conv2d(h, c[4].weight, c[4].bias, padding=1)), 2).flatten(1)  # 6 x 2 x 2
    fc = model.classifier
    h = F.relu(F.linear(h, fc.fc1.weight, fc.fc1.bias))
    h = F.relu(F.linear(h, fc.fc2.weight, fc.fc2.bias))
    torch.testing.assert_close(model(x), F.linear(h, fc.fc3.weight, fc.fc3.bias))
    assert [m.kernel_size for m in c] == [(3, 3)] * 5
    assert list(fc._modules) == ["drop1", "fc1", "relu1", "drop2", "fc2", "relu2", "fc3"]
    default = AlexNet()  # the CIFAR-10 AlexNet of the provable-repair work
    assert [m.out_channels for m in default.features if isinstance(m, nn.Conv2d)] == [64, 192, 384, 256, 256]
    assert (default.classifier.fc1.in_features, default.classifier.fc1.out_features, default.classifier.fc2.out_features,
            default.classifier.fc3.out_features) == (1024, 4096, 4096, 10)
    assert default.classifier.drop1.p == default.classifier.drop2.p == 0.0
    assert AlexNet(channels=(2, 3, 4, 5, 6), hidden=(7, 8), dropout=0.5).classifier.drop2.p == 0.5


def test_drawdown_set_is_the_test_set_without_exactly_the_edit_points():
    labels = np.arange(10) % 5
    predictions = labels.copy()
    predictions[[0, 1]] = (labels[[0, 1]] + 1) % 5  # wrong on image 0 (outside the edit set) and 1 (inside)
    edit = np.array([1, 3])
    drawdown = drawdown_indices(len(labels), edit)
    assert drawdown.tolist() == [0, 2, 4, 5, 6, 7, 8, 9]
    assert accuracy_on(predictions, labels, drawdown) == pytest.approx(7 / 8)
    assert accuracy_on(predictions, labels, edit) == pytest.approx(0.5)
    assert np.isnan(accuracy_on(predictions, labels, np.array([], dtype=np.int64)))


@pytest.mark.parametrize("objective, optimum", [("linf", 0.25), ("linf+l1", 0.5), ("linf+l1_normalized", 5 / 6)])
def test_each_objective_reaches_its_optimum_known_by_hand(objective, optimum):
    """One input a = 1, two classes, zero weights and biases, label 0, margin 1: the margin row is
    (w0 + b0) - (w1 + b1) >= 1. linf spreads it over the 4 parameters (0.25 each). linf+l1 adds the
    mean |delta| >= 1/4: 0.5. The original's norm over [d0, d1, 4 parameters] (d = logit change):
    max >= 1/2 and sum >= |d0| + |d1| + sum |delta| >= 2, so 1/2 + 2/6 = 5/6, reached by the same
    spread."""
    head = nn.Sequential(OrderedDict([("fc", nn.Linear(1, 2))]))
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.zero_()
    lp = build_repair_lp(split_head(head, "fc", torch.ones(1, 1)), np.array([0]), margin=1.0, param_bound=5.0, objective=objective)
    result = solve(lp, "highs")
    assert result.optimal and result.objective == pytest.approx(optimum, abs=1e-7)
    weight, bias = result.x[:2], result.x[2:4]
    assert (weight[0] + bias[0]) - (weight[1] + bias[1]) == pytest.approx(1.0, abs=1e-7)
    if objective == "linf+l1":
        assert np.abs(result.x[:4]) == pytest.approx([0.25] * 4, abs=1e-6)  # its unique optimum spreads evenly


def _original_norm(head: nn.Sequential, repair, inputs: torch.Tensor) -> float:
    """sytorch's linf+l1_normalized of [logit changes on the edit points, parameter changes]."""
    repaired = copy.deepcopy(head)
    layer = getattr(repaired, repair.layer)
    with torch.no_grad():
        layer.weight += torch.from_numpy(repair.delta_weight).float()
        layer.bias += torch.from_numpy(repair.delta_bias).float()
        change = (repaired(inputs) - head(inputs)).double().numpy().ravel()
    v = np.abs(np.concatenate([change, repair.delta_weight.ravel(), repair.delta_bias]))
    return float(v.max() + v.mean())


def test_the_original_objective_is_the_smallest_original_norm_on_a_hidden_layer():
    """Its optimum cannot score worse on its own norm than the linf optimum does (both feasible)."""
    head = mlp_head(seed=5)
    inputs = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    labels = wrong_labels(head, inputs)
    plain = repair_head(head, "fc2", inputs, labels, 0.5, 5.0, solver="highs", objective="linf")
    original = repair_head(head, "fc2", inputs, labels, 0.5, 5.0, solver="highs", objective="linf+l1_normalized")
    assert plain.successful and original.successful
    assert original.solve.objective == pytest.approx(_original_norm(head, original, inputs), rel=1e-4)
    assert _original_norm(head, original, inputs) <= _original_norm(head, plain, inputs) + 1e-6
    assert original.linf >= plain.linf - 1e-9  # linf is the smallest largest change


def test_a_repair_adds_the_float32_rounded_change_to_a_copy():
    """The LP's change is float64; the copy gets weight + float32(change), the change rounded to
    float32 before the float32 sum (1.0 + float32(2^-24 (1 + 2^-30)) is 1.0 + 2^-24, a tie that
    rounds to 1.0; the exact float64 sum would round up to 1 + 2^-23). The model passed in is untouched."""
    from weightlab.repair.core import RepairResult
    from weightlab.repair.solvers import SolveResult

    head = nn.Sequential(OrderedDict([("fc", nn.Linear(1, 1))]))
    with torch.no_grad():
        head.fc.weight.fill_(1.0)
        head.fc.bias.fill_(1.0)
    delta = np.array([[2.0 ** -24 * (1 + 2.0 ** -30)]])
    solve_result = SolveResult("highs", "Optimal", True, None, 0.0, 1, None, 0.0, "")
    result = RepairResult(True, "", "fc", solve_result, 3, 0, delta_weight=delta, delta_bias=np.array([-0.5]))
    repaired = apply_repair(Holder(head), result).classifier
    assert repaired.fc.weight.dtype == torch.float32 and repaired.fc.weight.item() == 1.0
    assert repaired.fc.bias.item() == 0.5 and head.fc.weight.item() == 1.0 and head.fc.bias.item() == 1.0


@needs_gurobi
def test_the_fallback_to_highs_keeps_the_time_limit():
    result = solve(_lp_over_the_licence(), "auto", time_limit=1e-9)
    if "fell back" not in result.choice:
        pytest.skip("a full Gurobi licence takes the model")
    assert result.solver == "highs" and result.status == "Time limit reached" and not result.optimal
