"""Interpolation, barriers, SRS and the hypothesis check on cases with known answers."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import default_settings
from weightlab.errors import InputError
from weightlab.rebasin.barriers import accuracy_barrier, barriers_document, loss_barrier, mean_endpoint_loss_barrier, semantic_barrier
from weightlab.rebasin.design import interpolation_alphas, model_pairs, training_seed
from weightlab.rebasin.models import ConvNet
from weightlab.rebasin.paths import interpolate_state
from weightlab.rebasin.report import Thresholds, hypothesis_report
from weightlab.rebasin.spurious import (
    NO_PATCH,
    PATCH_COLOURS,
    apply_patches,
    build_environments,
    reliance_from_predictions,
    spurious_reliance_score,
)
from weightlab.vision.training import reset_batchnorm_stats

THRESHOLDS = Thresholds.from_config(default_settings("rebasin", "criteria"))

def test_interpolation_reproduces_endpoints_and_midpoint():
    torch.manual_seed(0)
    a, b = ConvNet(width=4, hidden=8).state_dict(), ConvNet(width=4, hidden=8).state_dict()
    at_zero, at_one, half = interpolate_state(a, b, 0.0), interpolate_state(a, b, 1.0), interpolate_state(a, b, 0.5)
    for name in a:
        assert torch.equal(at_zero[name], a[name])
        if a[name].is_floating_point():
            assert torch.equal(at_one[name], b[name])
            torch.testing.assert_close(half[name], (a[name] + b[name]) / 2)
        else:  # integer buffers (num_batches_tracked) are not averaged
            assert torch.equal(at_one[name], a[name])


def test_barrier_formulas_on_a_known_curve():
    losses = [1.0, 1.5, 3.0, 2.0, 2.0]
    assert loss_barrier(losses) == pytest.approx(1.0)  # 3 - max(1, 2)
    assert mean_endpoint_loss_barrier(losses) == pytest.approx(1.5)  # 3 - (1 + 2) / 2
    assert loss_barrier([0.5, 0.4, 0.3]) == pytest.approx(0.0)  # monotone path: no barrier
    assert accuracy_barrier([0.9, 0.5, 0.8]) == pytest.approx(0.3)  # min(0.9, 0.8) - 0.5


def test_semantic_barrier_is_deviation_from_the_straight_line():
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert semantic_barrier(alphas, [0.4, 0.3, 0.2, 0.1, 0.0]) == pytest.approx(0.0)
    assert semantic_barrier(alphas, [0.4, 0.3, 0.5, 0.1, 0.0]) == pytest.approx(0.3)


def test_srs_on_constructed_predictions():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    pred_id = labels.copy()  # ID accuracy 1.0
    pred_ood = np.where(np.arange(10) < 6, labels, (labels + 1) % 10)  # 0.6
    pred_cf = np.where(np.arange(10) < 2, labels, (labels + 3) % 10)  # 0.2, 8 of 10 flip
    reliance = reliance_from_predictions(labels, pred_id, pred_ood, pred_cf)
    assert reliance.ood_drop == pytest.approx(0.4)
    assert reliance.cf_accuracy_drop == pytest.approx(0.8)
    assert reliance.flip_rate == pytest.approx(0.8)
    assert reliance.srs == pytest.approx(0.4 * 0.4 + 0.3 * 0.8 + 0.3 * 0.8)
    assert spurious_reliance_score(0.0, 0.0, 0.0) == 0.0


def test_environments_have_the_configured_alignment_and_counterfactuals_differ():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 20000)
    envs = build_environments(labels, labels, 0.95, 0.05, seed=1)
    assert np.mean(envs["train_A"] == labels) == pytest.approx(0.95, abs=0.01)
    assert np.mean(envs["train_B"] == labels) == pytest.approx(0.05, abs=0.01)
    assert np.mean(envs["train_AB"] == labels) == pytest.approx(0.5, abs=0.02)
    assert np.all(envs["test_none"] == NO_PATCH)
    assert np.all(envs["test_cf"] != envs["test_A"])
    assert envs["train_A"].min() >= 0 and envs["train_A"].max() <= 9


def test_apply_patches_colours_only_the_square():
    images = np.full((3, 1, 32, 32), 100, dtype=np.uint8)
    patched = apply_patches(images, np.array([2, NO_PATCH, 9]), size=4, offset=1)
    assert patched.shape == (3, 3, 32, 32)
    assert np.all(patched[0, :, 1:5, 1:5] == PATCH_COLOURS[2][:, None, None])
    assert np.all(patched[2, :, 1:5, 1:5] == PATCH_COLOURS[9][:, None, None])
    assert np.all(patched[1] == 100)
    outside = patched[0].copy()
    outside[:, 1:5, 1:5] = 100
    assert np.all(outside == 100)
    assert np.all(images == 100)  # the input is not modified


def test_batchnorm_reset_matches_the_data_statistics():
    torch.manual_seed(0)
    model = ConvNet(width=4, hidden=8)
    images = np.random.default_rng(0).integers(0, 255, size=(64, 3, 32, 32), dtype=np.uint8)
    reset_batchnorm_stats(model, images, torch.device("cpu"), batch_size=64)
    with torch.no_grad():
        from weightlab.vision.data import to_float_batch
        first = model.convs[0](to_float_batch(images))
    torch.testing.assert_close(model.norms[0].running_mean, first.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not model.training


def test_pairs_same_and_different():
    assert model_pairs([1, 2]) == [("A1", "A2", "same"), ("R1", "R2", "same"), ("A1", "R1", "different"), ("A2", "R2", "different")]
    pairs = model_pairs([1, 2, 3], "all")
    assert sum(kind == "same" for *_, kind in pairs) == 6
    assert sum(kind == "different" for *_, kind in pairs) == 9


def _barriers(same_aligned, diff_aligned, same_naive, semantic_different=0.2):
    pairs = {}
    for i, (aligned, naive) in enumerate(zip(same_aligned, same_naive)):
        pairs[f"S{i}"] = {"kind": "same", "naive": _entry(naive, 0.01), "aligned": _entry(aligned, 0.01)}
    for i, aligned in enumerate(diff_aligned):
        pairs[f"D{i}"] = {"kind": "different", "naive": _entry(aligned + 1, 0.2), "aligned": _entry(aligned, semantic_different)}
    return {"barrier_env": "A", "pairs": pairs}


def _entry(barrier, semantic):
    return {"loss_barrier": barrier, "loss_barrier_mean_endpoint": barrier, "accuracy_barrier": 0.0, "semantic_barrier": semantic}


SRS = {"A1": {"srs": 0.3, "ood_drop": 0.3, "id_accuracy": 0.95}, "A2": {"srs": 0.25, "ood_drop": 0.25, "id_accuracy": 0.93},
       "R1": {"srs": 0.07, "ood_drop": 0.02, "id_accuracy": 0.92}, "R2": {"srs": 0.06, "ood_drop": 0.01, "id_accuracy": 0.91}}
EXACT = {"S0": 1e-6, "S1": 2e-6, "D0": 0.0, "D1": 1e-6}
EXPECTED = ["spurious_models_high_srs", "spurious_models_large_ood_drop", "robust_models_low_srs", "robust_models_small_ood_drop",
            "same_mechanism_low_barrier_after_rebasin", "different_mechanism_higher_barrier_after_rebasin",
            "different_mechanism_srs_varies_along_path"]


def _by_id(report):
    return {c["id"]: c for c in report["criteria"]}


def test_every_expected_result_passing_with_preconditions_met_means_held():
    report = hypothesis_report(_barriers([0.05, 0.08, 0.06], [0.5, 0.6, 0.55], [1.0, 1.0, 1.0]), SRS, THRESHOLDS, alignment=EXACT)
    criteria = _by_id(report)
    assert report["verdict"] == "held", report["reason"]
    assert [c["id"] for c in report["criteria"] if c["kind"] == "expectation"] == EXPECTED
    assert [c["id"] for c in report["criteria"] if c["kind"] == "precondition"] == [
        "models_learn_the_task", "alignment_preserves_function", "mechanisms_differ"]
    assert criteria["spurious_models_large_ood_drop"]["threshold"] == "> 0.2 for every A model"
    assert criteria["spurious_models_large_ood_drop"]["value"] == {"A1": 0.3, "A2": 0.25, "mean": 0.275}
    higher = criteria["different_mechanism_higher_barrier_after_rebasin"]
    assert higher["value"]["difference"] == pytest.approx(0.55 - 0.19 / 3) and higher["interval"][0] > 0


def test_an_ood_drop_of_0_127_is_not_a_large_drop_and_the_hypothesis_fails():
    srs = {**SRS, "A2": {**SRS["A2"], "ood_drop": 0.127}}
    barriers = _barriers([0.05, 0.08, 0.06], [0.5, 0.6, 0.55], [1.0, 1.0, 1.0])
    report = hypothesis_report(barriers, srs, THRESHOLDS, alignment=EXACT)
    failed = {c["id"] for c in report["criteria"] if c["verdict"] == "fail"}
    assert failed == {"spurious_models_large_ood_drop"} and report["verdict"] == "not held"
    assert _by_id(report)["spurious_models_large_ood_drop"]["value"]["A2"] == 0.127
    assert hypothesis_report(barriers, srs, dataclasses.replace(THRESHOLDS, spurious_ood_drop_min=0.1), EXACT)["verdict"] == "held"


def test_a_model_that_does_not_learn_makes_the_expectations_not_testable_never_fail():
    srs = {**SRS, "R2": {**SRS["R2"], "id_accuracy": 0.6, "ood_drop": 0.5}}
    report = hypothesis_report(_barriers([0.5, 0.7], [0.1, 0.2], [1.0, 1.0]), srs, THRESHOLDS, alignment=EXACT)
    criteria = _by_id(report)
    assert criteria["models_learn_the_task"]["verdict"] == "fail"
    assert all(criteria[e]["verdict"] == "not_testable" for e in EXPECTED)
    assert "models_learn_the_task" in criteria["robust_models_small_ood_drop"]["reason"]
    assert report["verdict"] == "not testable" and "models_learn_the_task" in report["reason"]


def test_an_inexact_alignment_or_missing_check_blocks_only_the_barrier_expectations():
    report = hypothesis_report(_barriers([0.05, 0.08], [0.5, 0.6], [1.0, 1.0]), SRS, THRESHOLDS, alignment={**EXACT, "D1": 0.3})
    criteria = _by_id(report)
    assert criteria["alignment_preserves_function"]["verdict"] == "fail"
    assert criteria["spurious_models_high_srs"]["verdict"] == "pass"
    assert criteria["same_mechanism_low_barrier_after_rebasin"]["verdict"] == "not_testable"
    missing = _by_id(hypothesis_report(_barriers([0.05, 0.08], [0.5, 0.6], [1.0, 1.0]), SRS, THRESHOLDS))
    assert missing["alignment_preserves_function"]["verdict"] == "not_evaluable"
    assert missing["different_mechanism_srs_varies_along_path"]["verdict"] == "not_testable"


def test_barrier_criteria_read_the_aligned_barriers_and_higher_reads_the_interval():
    overlapping = _by_id(hypothesis_report(_barriers([0.05, 0.7], [0.5, 0.6], [1.0, 1.0]), SRS, THRESHOLDS, alignment=EXACT))
    assert overlapping["different_mechanism_higher_barrier_after_rebasin"]["verdict"] == "fail"
    assert overlapping["same_mechanism_low_barrier_after_rebasin"]["verdict"] == "fail"
    assert overlapping["same_mechanism_low_barrier_after_rebasin"]["value"] == {"S0": 0.05, "S1": 0.7, "mean": 0.375}
    assert overlapping["alignment_lowers_same_mechanism_barriers"]["verdict"] == "pass"
    assert overlapping["alignment_lowers_same_mechanism_barriers"]["kind"] == "check"
    spread = _by_id(hypothesis_report(_barriers([0.05, 0.3], [0.4, 0.9], [1.0, 1.0]), SRS, THRESHOLDS, alignment=EXACT))
    higher = spread["different_mechanism_higher_barrier_after_rebasin"]
    assert higher["verdict"] == "fail" and higher["interval"][0] < 0  # every different pair is higher, but the interval spans 0
    one_pair = _by_id(hypothesis_report(_barriers([0.05], [0.5], [1.0]), SRS, THRESHOLDS, alignment=EXACT))
    assert one_pair["different_mechanism_higher_barrier_after_rebasin"]["verdict"] == "not_evaluable"
    flat = hypothesis_report(_barriers([0.05, 0.08], [0.5, 0.6], [1.0, 1.0], semantic_different=0.01), SRS, THRESHOLDS, alignment=EXACT)
    assert _by_id(flat)["different_mechanism_srs_varies_along_path"]["verdict"] == "fail" and flat["verdict"] == "not held"


def test_thresholds_from_config_take_ranges_as_lists():
    assert Thresholds.from_config({**default_settings("rebasin", "criteria"), "robust_srs": [0.0, 0.2]}).robust_srs == (0.0, 0.2)
    with pytest.raises(InputError, match=r"^rebasin\.criteria: missing keys \['id_accuracy_min'\]"):
        Thresholds.from_config({k: v for k, v in default_settings("rebasin", "criteria").items() if k != "id_accuracy_min"})


def test_training_seeds_shared_or_separate():
    assert training_seed("A1", 0) == training_seed("R1", 0) == 1
    assert training_seed("A2", 3) == 3002
    assert training_seed("R1", 0, shared_seed=False) != training_seed("A1", 0, shared_seed=False)
    assert training_seed("A1", 0, shared_seed=False) == 1


def _interpolation(ref, other, loss_mid):
    curves = {"alpha": [0.0, 0.5, 1.0], "A_loss": [1.0, loss_mid, 1.0], "A_accuracy": [0.9, 0.5, 0.9], "srs": [0.3, 0.2, 0.1]}
    return {"ref": ref, "other": other, "naive": curves, "aligned": curves}


def test_barriers_document_pairs_files_with_kinds_by_key_not_position():
    interpolations = {"A1-R1": _interpolation("A1", "R1", 3.0), "A1-A2": _interpolation("A1", "A2", 1.5)}
    document = barriers_document(interpolations, {"A1-A2": "same", "A1-R1": "different"}, "A")
    assert list(document["pairs"]) == ["A1-A2", "A1-R1"]
    assert document["pairs"]["A1-A2"]["kind"] == "same" and document["pairs"]["A1-A2"]["aligned"]["loss_barrier"] == pytest.approx(0.5)
    assert document["pairs"]["A1-R1"]["kind"] == "different" and document["pairs"]["A1-R1"]["naive"]["loss_barrier"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="A1-A2 is of A1-R1"):
        barriers_document({"A1-A2": _interpolation("A1", "R1", 3.0)}, {"A1-A2": "same"}, "A")
    with pytest.raises(ValueError, match="no interpolation results"):
        barriers_document({}, {"A1-A2": "same"}, "A")


def test_interpolation_alphas_include_both_endpoints():
    assert interpolation_alphas(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert interpolation_alphas(3)[1] == 0.5
    with pytest.raises(ValueError, match="at least 2"):
        interpolation_alphas(1)


def test_a_permuted_copy_has_no_barrier_after_alignment_through_the_whole_chain():
    """align -> interpolate (with BN resets) -> barrier on a model and a permuted copy of itself."""
    from weightlab.rebasin.paths import align, interpolation_path, path_curves
    from weightlab.rebasin.permutations import apply_permutation

    torch.manual_seed(0)
    model = ConvNet(width=4, hidden=16)
    spec = model.permutation_spec()
    rng = np.random.default_rng(0)
    sizes = {}
    for name, axes in spec.axes.items():
        for axis, perm in enumerate(axes):
            if perm is not None:
                sizes[perm] = model.state_dict()[name].shape[axis]
    perms = {perm: rng.permutation(n) for perm, n in sizes.items()}
    permuted = ConvNet(width=4, hidden=16)
    permuted.load_state_dict(apply_permutation(spec, perms, model.state_dict()))
    images = rng.integers(0, 256, size=(64, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=64)
    eval_sets = {"A": (images, labels)}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    aligned, _ = align(model, permuted)
    device = torch.device("cpu")
    naive = path_curves(interpolation_path(ConvNet(width=4, hidden=16), state, permuted.state_dict(), [0, 0.25, 0.5, 0.75, 1], eval_sets, images, device))
    fixed = path_curves(interpolation_path(ConvNet(width=4, hidden=16), state, aligned, [0, 0.25, 0.5, 0.75, 1], eval_sets, images, device))
    assert loss_barrier(fixed["A_loss"]) == pytest.approx(0.0, abs=1e-5)
    assert max(fixed["A_loss"]) - min(fixed["A_loss"]) == pytest.approx(0.0, abs=1e-5)
    assert max(naive["A_loss"]) - min(naive["A_loss"]) > 1e-3  # the unaligned path does leave the endpoint's function


def test_batchnorm_reset_images_come_from_the_endpoints_training_environments():
    from weightlab.rebasin.environments import reset_images
    from weightlab.vision.data import ImageDataset, ImageSplit

    n = 40
    train = ImageSplit(np.full((n, 3, 32, 32), 7, dtype=np.uint8), np.arange(n) % 10)
    test = ImageSplit(np.full((n, 3, 32, 32), 200, dtype=np.uint8), np.arange(n) % 10)
    dataset = ImageDataset("toy", tuple(str(c) for c in range(10)), train, test)
    colours = {"train_A": np.zeros(n, dtype=np.int64), "train_AB": np.full(n, 3, dtype=np.int64),
               "test_A": np.full(n, 5, dtype=np.int64)}
    only_a = reset_images(dataset, colours, ["A1", "A2"], patch_size=4, size=10, seed=0)
    mixed = reset_images(dataset, colours, ["A1", "R1"], patch_size=4, size=10, seed=0)
    corner = lambda images: {tuple(img[:, 0, 0]) for img in images}  # noqa: E731
    assert len(only_a) == 10 and corner(only_a) == {tuple(PATCH_COLOURS[0])}
    assert len(mixed) == 10 and corner(mixed) == {tuple(PATCH_COLOURS[0]), tuple(PATCH_COLOURS[3])}
    assert (only_a[:, :, 10:, 10:] == 7).all() and (mixed[:, :, 10:, 10:] == 7).all()  # training images, never test ones


@pytest.mark.parametrize("share_b, agreement", [(0.0, 0.95), (0.5, 0.5), (0.944, 0.1)])
def test_robust_mixture_puts_the_colour_where_its_share_of_env_b_says(share_b, agreement):
    labels = np.arange(40_000) % 10
    colours = build_environments(labels, labels[:10], 0.95, 0.05, seed=0, share_b=share_b)["train_AB"]
    assert float((colours == labels).mean()) == pytest.approx(agreement, abs=0.01)


def _sweep_rows(same_by_width, different_by_width, accuracy=0.95):
    rows = []
    for mult, (same, different) in zip((0.5, 1.0, 2.0), zip(same_by_width, different_by_width)):
        for i, value in enumerate(same):
            for method, barrier in (("naive", value + 1), ("aligned", value)):
                rows.append({"multiplier": mult, "pair": f"A{2 * i + 1}-A{2 * i + 2}", "kind": "same", "method": method,
                             "loss_barrier": barrier, "end_accuracy": [accuracy, accuracy]})
        for i, value in enumerate(different):
            for method, barrier in (("naive", value + 1), ("aligned", value)):
                rows.append({"multiplier": mult, "pair": f"A{i + 1}-R{i + 1}", "kind": "different", "method": method,
                             "loss_barrier": barrier, "end_accuracy": [accuracy, accuracy]})
    return rows


def test_width_sweep_expectation_reads_the_slope_and_the_gap_at_every_width():
    from weightlab.rebasin.width import group_summary, slope_interval, width_criteria
    from weightlab.verdicts import study_verdict

    slope, ci = slope_interval([0, 1, 2, 3], [3.0, 2.0, 1.0, 0.0])
    assert slope == pytest.approx(-1.0) and ci == pytest.approx([-1.0, -1.0])
    assert slope_interval([1, 1], [0.0, 1.0])[1] is None
    gaps = {"0.5": {"A1-A2": 1e-6}, "1": {"A1-A2": 2e-6}, "2": {"A1-A2": 0.0}}
    falling = _sweep_rows([[0.5, 0.55], [0.3, 0.32], [0.1, 0.12]], [[0.9, 0.95], [0.8, 0.85], [0.9, 0.92]])
    criteria = {c.id: c for c in width_criteria(falling, gaps)}
    assert criteria["same_mechanism_barrier_decreases_with_width"].verdict == "pass"
    assert criteria["different_mechanism_stays_above_at_every_width"].verdict == "pass"
    assert study_verdict(list(criteria.values()))["verdict"] == "held"
    assert group_summary(falling)["1"]["same/aligned"]["mean"] == pytest.approx(0.31)
    flat = {c.id: c for c in width_criteria(_sweep_rows([[0.3, 0.5], [0.4, 0.35], [0.3, 0.45]], [[0.9, 0.95]] * 3), gaps)}
    assert flat["same_mechanism_barrier_decreases_with_width"].verdict == "fail"
    weak = width_criteria(_sweep_rows([[0.5, 0.55], [0.3, 0.32], [0.1, 0.12]], [[0.9, 0.95]] * 3, accuracy=0.5), gaps)
    judged = study_verdict(weak)
    assert judged["verdict"] == "not testable" and "models_learn_the_task_at_every_width" in judged["reason"]


def test_width_pair_files_reuse_the_main_run_at_multiplier_one():
    from weightlab.rebasin.design import scaled_model, width_pair_file

    assert width_pair_file("1", "interpolation", "A1", "A2") == "results/rebasin/interpolation/A1_A2.json"
    assert width_pair_file("0.5", "alignment", "A1", "R1") == "results/rebasin/width/x0.5/alignment/R1_to_A1.json"
    assert scaled_model({"arch": "convnet", "width": 16, "hidden": 128}, 1.5) == {"arch": "convnet", "width": 24, "hidden": 192}
    assert scaled_model({"width": 8, "hidden": 32}, 0.1)["width"] == 1


def _trained_looking_convnet(seed: int) -> ConvNet:
    """A small ConvNet with BatchNorm statistics and affine terms away from their defaults."""
    torch.manual_seed(seed)
    model = ConvNet(width=4, hidden=16)
    with torch.no_grad():
        for norm in model.norms:
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.normal_(1, 0.3)
            norm.bias.normal_(0, 0.3)
    return model


def test_evaluation_numbers_do_not_depend_on_the_forward_batch_or_a_converted_set():
    """Forward passes of a few images at a time and a set converted to float once give exactly
    (bit for bit) the loss, accuracy and predictions of one pass over uint8 images; a model left
    in train mode would not (its BatchNorm uses batch statistics), which evaluate rules out."""
    from weightlab.vision.data import to_float_batch
    from weightlab.vision.training import evaluate

    model = _trained_looking_convnet(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(70, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=70)
    device = torch.device("cpu")
    whole = evaluate(model, images, labels, device, batch_size=70)
    for forward_batch in (7, 16, 100):
        for inputs in (images, to_float_batch(images)):
            result = evaluate(model, inputs, labels, device, batch_size=70, forward_batch=forward_batch)
            assert result.loss == whole.loss and result.accuracy == whole.accuracy
            assert np.array_equal(result.predictions, whole.predictions)
    assert evaluate(model, images, labels, device, batch_size=32).loss == pytest.approx(whole.loss, rel=1e-6)


def test_batchnorm_reset_from_a_converted_set_is_the_reset_from_uint8_images():
    from weightlab.vision.data import to_float_batch

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(48, 3, 32, 32), dtype=np.uint8)
    first, second = _trained_looking_convnet(1), _trained_looking_convnet(1)
    reset_batchnorm_stats(first, images, torch.device("cpu"), batch_size=20)
    reset_batchnorm_stats(second, to_float_batch(images), torch.device("cpu"), batch_size=20)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    untouched = _trained_looking_convnet(1)
    assert not torch.equal(first.norms[0].running_mean, untouched.norms[0].running_mean)


def test_paths_sharing_the_alpha_zero_point_equal_paths_evaluated_alone():
    """interpolation_paths evaluates A (alpha 0) once for both paths; each curve must equal the
    one interpolation_path computes for that path alone, alpha 0 evaluated there itself."""
    from weightlab.rebasin.paths import interpolation_path, interpolation_paths, path_curves

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(40, 3, 32, 32), dtype=np.uint8)
    eval_sets = {name: (rng.integers(0, 256, size=(30, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=30))
                 for name in ("A", "none", "cf")}
    state_a = _trained_looking_convnet(3).state_dict()
    others = {"naive": _trained_looking_convnet(4).state_dict(), "aligned": _trained_looking_convnet(5).state_dict()}
    alphas, device = [0.0, 0.5, 1.0], torch.device("cpu")
    joint = interpolation_paths(ConvNet(width=4, hidden=16), state_a, others, alphas, eval_sets, images, device)
    for name, state_b in others.items():
        alone = interpolation_path(ConvNet(width=4, hidden=16), state_a, state_b, alphas, eval_sets, images, device)
        assert path_curves(joint[name]) == path_curves(alone), name
    assert joint["naive"][0].metrics == joint["aligned"][0].metrics
    assert joint["naive"][-1].metrics != joint["aligned"][-1].metrics  # the other endpoints differ


def _close(actual, expected):
    """Nested dicts and lists equal, floats to 1e-6 (pytest.approx does not nest)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (actual, expected)
        for key in expected:
            _close(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (actual, expected)
        for a, e in zip(actual, expected):
            _close(a, e)
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1e-6), (actual, expected)
    else:
        assert actual == expected, (actual, expected)


def _block_shapes(model: ConvNet, images: torch.Tensor) -> list[tuple[int, ...]]:
    """The output shape of every conv-norm block (after its ReLU and pooling: the next block's input)."""
    shapes = []
    hooks = [layer.register_forward_hook(lambda _m, inputs, _o: shapes.append(tuple(inputs[0].shape)))
             for layer in [*model.convs[1:], model.fc1]]
    try:
        logits = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes + [tuple(logits.shape)]


def test_convnet_defaults_are_the_configured_model_and_its_blocks_have_the_documented_shapes():
    """ConvNet() is the schema's default (width 16, hidden 128, 10 classes, BatchNorm); the blocks have
    w, w, 2w, 2w, 4w channels of 3x3 'same' convolutions, pooling after the 2nd, 4th and 5th."""
    model = ConvNet()
    assert [tuple(c.weight.shape) for c in model.convs] == [(16, 3, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3),
                                                            (64, 32, 3, 3)]
    assert tuple(model.fc1.weight.shape) == (128, 64) and tuple(model.fc2.weight.shape) == (10, 128)
    assert all(isinstance(n, torch.nn.BatchNorm2d) and c.bias is None for n, c in zip(model.norms, model.convs))
    small = ConvNet(width=2, hidden=3, num_classes=4, norm="batch").eval()
    # 32x32 input: 'same' convs keep the size; 2x2 pooling after blocks 1, 3, 4 gives 32, 16, 16, 8, then 4
    assert _block_shapes(small, torch.zeros(2, 3, 32, 32)) == [(2, 2, 32, 32), (2, 2, 16, 16), (2, 4, 16, 16), (2, 4, 8, 8),
                                                               (2, 8), (2, 4)]
    assert [tuple(c.weight.shape) for c in small.convs] == [(2, 3, 3, 3), (2, 2, 3, 3), (4, 2, 3, 3), (4, 4, 3, 3), (8, 4, 3, 3)]


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_convnet_norm_layers_and_conv_biases_follow_the_norm_kind(norm):
    model = ConvNet(width=3, hidden=4, norm=norm)
    kinds = {"batch": torch.nn.BatchNorm2d, "layer": torch.nn.GroupNorm, "none": torch.nn.Identity}
    assert all(type(n) is kinds[norm] for n in model.norms)
    if norm == "layer":  # one group: statistics over all channels
        assert [n.num_groups for n in model.norms] == [1] * 5
    assert all((c.bias is not None) == (norm == "none") for c in model.convs)
    with pytest.raises(InputError, match="unknown norm"):
        ConvNet(width=2, norm="instance")


def _randomised(model: ConvNet, seed: int) -> ConvNet:
    """Every parameter and BatchNorm statistic drawn at random, so no permutation can be hidden by symmetry."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if name.endswith("running_var") else values - 0.5)
    return model.eval()


@pytest.mark.parametrize("norm, axes_per_conv_perm", [("batch", 6), ("layer", 4), ("none", 3)])
def test_convnet_permutation_spec_names_every_axis_and_a_random_permutation_keeps_the_function(norm, axes_per_conv_perm):
    """The spec fits the state dict; each block's permutation reaches its conv's out axis, its norm's
    vectors (weight, bias and the running statistics with BatchNorm; the conv bias without a norm) and
    the next layer's in axis; P_fc1 reaches fc1's rows and bias and fc2's columns. Permuting every hidden
    unit at random leaves the logits unchanged while it moves the weights."""
    from weightlab.rebasin.permutations import apply_permutation

    model = _randomised(ConvNet(width=3, hidden=5, num_classes=4, norm=norm), seed=1)
    spec = model.permutation_spec()
    state = model.state_dict()
    spec.check(state)
    assert {p: len(axes) for p, axes in spec.perm_to_axes.items()} == {
        **{f"P_conv{i}": axes_per_conv_perm for i in range(5)}, "P_fc1": 3}
    rng = np.random.default_rng(2)
    perms = {p: rng.permutation(state[axes[0][0]].shape[axes[0][1]]) for p, axes in spec.perm_to_axes.items()}
    permuted = ConvNet(width=3, hidden=5, num_classes=4, norm=norm)
    permuted.load_state_dict(apply_permutation(spec, perms, state))
    permuted.eval()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(permuted(images), model(images), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(permuted.convs[2].weight, model.convs[2].weight)


def _curves(losses, accuracies):
    return {"B_loss": losses, "A_loss": [9.0, 9.0, 9.0], "A_accuracy": accuracies}


def test_width_sweep_rows_summary_and_document_on_constructed_interpolations():
    """Rows read each method's `env` loss barrier and its path's end accuracies on env A; the
    summary is n, mean and Student-t interval per width, kind and method (None where no pair)."""
    from weightlab.rebasin.width import HYPOTHESIS, sweep_document, sweep_rows

    interpolations = {
        "0.5": {"A1-A2": {"naive": _curves([0.5, 1.5, 0.7], [0.91, 0.2, 0.92]), "aligned": _curves([0.5, 0.75, 0.7], [0.93, 0.8, 0.94])},
                "A3-A4": {"naive": _curves([0.2, 1.0, 0.4], [0.95, 0.3, 0.96]), "aligned": _curves([0.2, 0.65, 0.4], [0.97, 0.7, 0.98])}},
        "2": {"A1-R1": {"naive": _curves([0.1, 2.0, 0.1], [0.99, 0.1, 0.9]), "aligned": _curves([0.1, 1.1, 0.1], [0.99, 0.5, 0.9])}},
    }
    kinds = {"A1-A2": "same", "A3-A4": "same", "A1-R1": "different"}
    rows = sweep_rows(interpolations, kinds, "B")
    expected_rows = [
        {"multiplier": 0.5, "pair": "A1-A2", "kind": "same", "method": "naive", "loss_barrier": 0.8, "end_accuracy": [0.91, 0.92]},
        {"multiplier": 0.5, "pair": "A1-A2", "kind": "same", "method": "aligned", "loss_barrier": 0.05, "end_accuracy": [0.93, 0.94]},
        {"multiplier": 0.5, "pair": "A3-A4", "kind": "same", "method": "naive", "loss_barrier": 0.6, "end_accuracy": [0.95, 0.96]},
        {"multiplier": 0.5, "pair": "A3-A4", "kind": "same", "method": "aligned", "loss_barrier": 0.25, "end_accuracy": [0.97, 0.98]},
        {"multiplier": 2.0, "pair": "A1-R1", "kind": "different", "method": "naive", "loss_barrier": 1.9, "end_accuracy": [0.99, 0.9]},
        {"multiplier": 2.0, "pair": "A1-R1", "kind": "different", "method": "aligned", "loss_barrier": 1.0, "end_accuracy": [0.99, 0.9]},
    ]
    _close(rows, expected_rows)
    assert all(isinstance(r["multiplier"], float) for r in rows)
    t1 = 12.7062047  # Student t, 1 degree of freedom, 97.5% quantile
    empty = {"n": 0, "mean": None, "ci95": None}
    expected_summary = {  # aligned 0.05, 0.25: mean 0.15, sem 0.1; naive 0.8, 0.6: mean 0.7, sem 0.1
        "0.5": {"same/naive": {"n": 2, "mean": 0.7, "ci95": [0.7 - t1 * 0.1, 0.7 + t1 * 0.1]},
                "same/aligned": {"n": 2, "mean": 0.15, "ci95": [0.15 - t1 * 0.1, 0.15 + t1 * 0.1]},
                "different/naive": empty, "different/aligned": empty},
        "2": {"same/naive": empty, "same/aligned": empty,
              "different/naive": {"n": 1, "mean": 1.9, "ci95": None}, "different/aligned": {"n": 1, "mean": 1.0, "ci95": None}},
    }
    alignments = {"0.5": {"A1-A2": {"function_check": {"max_abs_logit_difference": 2e-5}}, "A3-A4": {"function_check": {"max_abs_logit_difference": 0.0}}},
                  "2": {"A1-R1": {}}}
    models = {"arch": "convnet", "width": 16}
    document = sweep_document(interpolations, alignments, kinds, "B", models)
    assert list(document) == ["multipliers", "models", "barrier_env", "rows", "summary", "study", "hypothesis", "verdict",
                              "reason", "counts", "criteria"]
    assert document["multipliers"] == [0.5, 2.0] and document["models"] == models and document["barrier_env"] == "B"
    _close(document["rows"], expected_rows)
    _close(document["summary"], expected_summary)
    assert document["study"] == "rebasin_width" and document["hypothesis"] == HYPOTHESIS
    criteria = {c["id"]: c for c in document["criteria"]}
    # every end accuracy >= 0.9 (the default minimum); one alignment has no function check
    assert criteria["models_learn_the_task_at_every_width"]["verdict"] == "pass"
    assert criteria["alignment_preserves_function_at_every_width"]["value"] == {"0.5": {"A1-A2": 2e-5, "A3-A4": 0.0}, "2": {"A1-R1": None}}
    assert criteria["alignment_preserves_function_at_every_width"]["verdict"] == "not_evaluable"
    checked = {**alignments, "2": {"A1-R1": {"function_check": {"max_abs_logit_difference": 5e-5}}}}
    criteria = {c["id"]: c for c in sweep_document(interpolations, checked, kinds, "B", models)["criteria"]}
    assert criteria["alignment_preserves_function_at_every_width"]["verdict"] == "pass"  # every gap < 1e-4, the default
    strict = {c["id"]: c for c in sweep_document(interpolations, checked, kinds, "B", models, id_accuracy_min=0.95,
                                                  logit_gap_max=1e-5)["criteria"]}
    assert strict["models_learn_the_task_at_every_width"]["threshold"] == ">= 0.95 for every model"
    assert strict["models_learn_the_task_at_every_width"]["verdict"] == "fail"  # 0.91, 0.92, 0.9 < 0.95
    assert strict["alignment_preserves_function_at_every_width"]["verdict"] == "fail"  # 2e-5, 5e-5 >= 1e-5
    loose = {**checked, "2": {"A1-R1": {"function_check": {"max_abs_logit_difference": 2e-4}}}}
    criteria = {c["id"]: c for c in sweep_document(interpolations, loose, kinds, "B", models)["criteria"]}
    assert criteria["alignment_preserves_function_at_every_width"]["verdict"] == "fail"  # 2e-4 >= 1e-4


def test_keyed_by_width_splits_the_records_width_by_width():
    from weightlab.rebasin.width import keyed_by_width

    records = [{"ref": ref, "other": other, "i": i} for i, (ref, other) in
               enumerate([("A1", "A2"), ("A1", "R1"), ("A1", "A2"), ("A1", "R1"), ("A1", "A2"), ("A1", "R1")])]
    assert keyed_by_width(records, [0.5, 1.0, 2.0], 2) == {
        "0.5": {"A1-A2": records[0], "A1-R1": records[1]},
        "1": {"A1-A2": records[2], "A1-R1": records[3]},
        "2": {"A1-A2": records[4], "A1-R1": records[5]},
    }


def test_slope_interval_at_its_edges_and_on_three_points_by_hand():
    from weightlab.rebasin.width import slope_interval

    slope, ci = slope_interval([3.0, 3.0], [0.1, 0.2])
    assert math.isnan(slope) and ci is None  # a single x value: no slope
    assert slope_interval([0.0, 1.0], [1.0, 3.0]) == (pytest.approx(2.0), None)  # two points: a slope, no interval
    assert slope_interval([0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]) == (pytest.approx(-1.0), pytest.approx([-1.0, -1.0]))
    # y = 0, 2, 1 at x = 0, 1, 2: slope 0.5, residuals -0.5, 1, -0.5, s^2 = 1.5 / 1, Sxx = 2, stderr sqrt(0.75);
    # t(97.5%, 1 df) = 12.7062047
    half = 12.7062047 * math.sqrt(0.75)
    slope, ci = slope_interval([0.0, 1.0, 2.0], [0.0, 2.0, 1.0])
    assert slope == pytest.approx(0.5) and ci == pytest.approx([0.5 - half, 0.5 + half])


def _row(mult, pair, kind, method, barrier, ends):
    return {"multiplier": mult, "pair": pair, "kind": kind, "method": method, "loss_barrier": barrier, "end_accuracy": ends}


ACCURACY = {"A1": 0.9, "A2": 0.95, "A3": 0.97, "A4": 0.92, "R1": 0.93, "R2": 0.91}


def _width_rows(aligned_by_width):
    """Rows at each multiplier: pair -> aligned barrier; the naive barrier is the aligned one plus the
    multiplier, the naive path's ends carry ACCURACY, the aligned path's ends 0.1 (not read)."""
    rows = []
    for mult, pairs in aligned_by_width.items():
        for pair, barrier in pairs.items():
            kind = "different" if "R" in pair else "same"
            ref, other = pair.split("-")
            rows.append(_row(mult, pair, kind, "naive", barrier + mult, [ACCURACY[ref], ACCURACY[other]]))
            rows.append(_row(mult, pair, kind, "aligned", barrier, [0.1, 0.1]))
    return rows


def _as_dicts(criteria):
    """The criteria as records without their human-readable statements."""
    return {c.id: {k: v for k, v in c.as_dict().items() if k not in ("id", "statement")} for c in criteria}


SLOPE_SOURCE = "issue 16 (after Ainsworth et al.: the barrier after weight matching falls toward zero with width)"
ABOVE_SOURCE = "issue 16 (expected result 4 of the original at every width)"
LEARNS_ID, EXACT_ID = "models_learn_the_task_at_every_width", "alignment_preserves_function_at_every_width"
SLOPE_ID, ABOVE_ID = "same_mechanism_barrier_decreases_with_width", "different_mechanism_stays_above_at_every_width"


def test_width_criteria_records_on_flat_barriers_and_a_gap_at_the_threshold():
    """Same-mechanism aligned barriers 0.3 at x1 and 0.2 at x2 (slope -0.1 per doubling, on a line: interval
    [-0.1, -0.1]); the different-mechanism ones 0.3 at x1 (difference 0, interval [0, 0]: not above 0) and
    0.7 at x2;
    an ID accuracy of exactly 0.9 passes, a logit gap of exactly 1e-4 fails."""
    from weightlab.rebasin.width import width_criteria

    pairs = ("A1-A2", "A3-A4", "A1-R1", "A2-R2")
    rows = _width_rows({1.0: dict.fromkeys(pairs, 0.3), 2.0: {**dict.fromkeys(pairs[:2], 0.2), **dict.fromkeys(pairs[2:], 0.7)}})
    gaps = {"1": {p: 5e-5 for p in pairs}, "2": {**{p: 0.0 for p in pairs[:3]}, "A2-R2": 1e-4}}
    needs = [LEARNS_ID, EXACT_ID]
    expected = {
        LEARNS_ID: {"source": "ours", "kind": "precondition", "threshold": ">= 0.9 for every model",
                    "value": {f"{m}@x{t}": ACCURACY[m] for t in ("1", "2") for m in ("A1", "A2", "A3", "A4", "R1", "R2")},
                    "interval": None, "verdict": "pass", "reason": "", "depends_on": []},
        EXACT_ID: {"source": "ours", "kind": "precondition", "threshold": "< 0.0001 for every pair", "value": gaps,
                   "interval": None, "verdict": "fail", "reason": "", "depends_on": []},
        SLOPE_ID: {"source": SLOPE_SOURCE, "kind": "expectation", "threshold": "95% interval of the slope below 0",
                   "value": {"slope_per_doubling": -0.1, "pairs": 4}, "interval": [-0.1, -0.1], "verdict": "pass",
                   "reason": "verdict reads the interval", "depends_on": needs},
        ABOVE_ID: {"source": ABOVE_SOURCE, "kind": "expectation",
                   "threshold": "95% Welch interval of mean(different) − mean(same) above 0 at every width",
                   "value": {"1": {"difference": 0.0, "ci95": [0.0, 0.0]}, "2": {"difference": 0.5, "ci95": [0.5, 0.5]}},
                   "interval": None, "verdict": "fail", "reason": "verdict reads the interval at every width", "depends_on": needs},
    }
    _close(_as_dicts(width_criteria(rows, gaps)), expected)


def test_width_criteria_fail_when_a_width_s_interval_straddles_zero_and_say_why_others_are_not_evaluable():
    from weightlab.rebasin.width import width_criteria

    rows = _width_rows({1.0: {"A1-A2": 0.2, "A3-A4": 0.3, "A1-R1": 0.1, "A2-R2": 0.5}})
    gaps = {"1": {"A1-A2": 0.0, "A3-A4": None, "A1-R1": 0.0, "A2-R2": 0.0}}
    records = _as_dicts(width_criteria(rows, gaps))
    assert records[EXACT_ID]["verdict"] == "not_evaluable" and records[EXACT_ID]["value"] == gaps
    assert records[EXACT_ID]["reason"] == "an alignment record has no function check (re-run its alignment)"
    # one width: a slope needs two
    assert math.isnan(records[SLOPE_ID]["value"]["slope_per_doubling"]) and records[SLOPE_ID]["value"]["pairs"] == 2
    assert records[SLOPE_ID]["interval"] is None and records[SLOPE_ID]["verdict"] == "not_evaluable"
    assert records[SLOPE_ID]["reason"] == "needs at least three same-mechanism barriers at two widths"
    # different 0.1, 0.5 against same 0.2, 0.3: difference 0.05, its Welch interval contains 0
    above = records[ABOVE_ID]
    low, high = above["value"]["1"]["ci95"]
    assert above["value"]["1"]["difference"] == pytest.approx(0.05) and low < 0 < high
    assert above["verdict"] == "fail"


def test_width_criteria_without_naive_rows_gaps_or_a_second_different_pair_are_not_evaluable():
    from weightlab.rebasin.width import width_criteria

    rows = [r for r in _width_rows({1.0: {"A1-A2": 0.2, "A3-A4": 0.3, "A1-R1": 0.6}}) if r["method"] == "aligned"]
    records = _as_dicts(width_criteria(rows, {}))
    assert records[LEARNS_ID]["value"] == {} and records[LEARNS_ID]["verdict"] == "not_evaluable"
    assert records[EXACT_ID]["value"] == {} and records[EXACT_ID]["verdict"] == "not_evaluable"
    above = records[ABOVE_ID]
    assert above["value"] == {"1": {"difference": pytest.approx(0.35), "ci95": None}}
    assert above["verdict"] == "not_evaluable" and above["depends_on"] == [LEARNS_ID, EXACT_ID]
    assert above["reason"] == "needs two same- and two different-mechanism pairs at every width for an interval"
    nothing = _as_dicts(width_criteria([], {}))[ABOVE_ID]  # no width measured: no verdict either way
    assert nothing["value"] == {} and nothing["verdict"] == "not_evaluable"
