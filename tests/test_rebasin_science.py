"""Breaks of the Re-Basin science that a unit test must catch, each on a case with a known answer.

- BatchNorm recalibration on a *trained* model: stale running statistics (and a large
  `num_batches_tracked`) must be replaced by the data's batch statistics, not nudged.
- The reset along an interpolation path: a path whose every point computes the same function
  only once its BatchNorm statistics are recomputed.
- The SRS wiring of the path code: evaluation sets on which a model's predictions, hence every
  SRS term, are known.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import default_settings
from weightlab.rebasin.models import ConvNet
from weightlab.rebasin.paths import evaluate_point, interpolation_path, mechanism_check, path_curves
from weightlab.rebasin.spurious import NO_PATCH, spurious_reliance_score
from weightlab.vision.data import PIXEL_MEAN, PIXEL_STD
from weightlab.vision.training import reset_batchnorm_stats

CPU = torch.device("cpu")



def thresholds():
    """The study's thresholds as config.yaml states them."""
    from weightlab.rebasin.report import Thresholds

    return Thresholds.from_config(default_settings("rebasin", "criteria"))

def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def batch_statistics(model: nn.Module, images: np.ndarray, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm: the mean over batches of each batch's channel mean and unbiased variance of
    its input, measured with hooks in training mode (where the input does not depend on the
    running statistics)."""
    from weightlab.vision.data import to_float_batch

    probe = copy.deepcopy(model).train()
    seen: dict[int, list[torch.Tensor]] = {}
    hooks = [norm.register_forward_hook(lambda module, inputs, output, i=i: seen.setdefault(i, []).append(inputs[0].detach()))
             for i, norm in enumerate(batchnorms(probe))]
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            probe(to_float_batch(images[start:start + batch_size]))
    for hook in hooks:
        hook.remove()
    stats = []
    for i in sorted(seen):
        means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen[i]])
        variances = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in seen[i]])
        stats.append((means.mean(0), variances.mean(0)))
    return stats


def three_unlike_batches(seed: int = 0) -> np.ndarray:
    """96 images in three batches of 32 whose brightness differs, so the batches' statistics differ."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.integers(low, low + 100, size=(32, 3, 32, 32), dtype=np.uint8) for low in (0, 80, 155)])


# --- (a) BatchNorm recalibration on a trained model ---------------------------------------------


def test_recalibration_replaces_stale_statistics_of_a_trained_model_by_the_data_batch_statistics():
    torch.manual_seed(0)
    model = ConvNet(width=4, hidden=8)
    for norm in batchnorms(model):  # a trained-looking model: stale statistics, long history
        norm.running_mean.fill_(5.0)
        norm.running_var.fill_(50.0)
        norm.num_batches_tracked.fill_(1000)
    images = three_unlike_batches()
    expected = batch_statistics(model, images, batch_size=32)
    reset_batchnorm_stats(model, images, CPU, batch_size=32)
    assert len(expected) == len(batchnorms(model)) == 5
    for norm, (mean, var) in zip(batchnorms(model), expected):
        torch.testing.assert_close(norm.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(norm.running_var, var, rtol=1e-4, atol=1e-5)
        assert int(norm.num_batches_tracked) == 3  # counted afresh: three batches of 32
        assert norm.momentum == 0.1  # the layer's own momentum is given back
    assert not model.training


def test_recalibrated_model_computes_what_a_freshly_calibrated_copy_computes():
    """Whatever the stale statistics were, the recalibrated model's outputs are the same."""
    torch.manual_seed(1)
    model = ConvNet(width=4, hidden=8)
    stale = copy.deepcopy(model)
    for norm in batchnorms(stale):
        norm.running_mean.normal_(3.0, 1.0)
        norm.running_var.uniform_(10.0, 20.0)
        norm.num_batches_tracked.fill_(5000)
    images = three_unlike_batches(seed=2)
    reset_batchnorm_stats(model, images, CPU, batch_size=32)
    reset_batchnorm_stats(stale, images, CPU, batch_size=32)
    from weightlab.vision.data import to_float_batch

    with torch.no_grad():
        torch.testing.assert_close(stale(to_float_batch(images)), model(to_float_batch(images)), rtol=1e-4, atol=1e-5)


def test_a_model_without_batchnorm_is_left_as_it_is():
    model = ConvNet(width=4, hidden=8, norm="layer").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reset_batchnorm_stats(model, three_unlike_batches(), CPU)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- (b) the reset along an interpolation path --------------------------------------------------

CONV_SCALES = (3.0, 2.0, 4.0, 1.5, 2.5)


def test_every_point_of_a_path_between_rescaled_copies_computes_the_endpoint_function():
    """B is A with conv layer i's weights multiplied by c_i > 0 (and its statistics recomputed).
    A conv without bias followed by BatchNorm does not see a positive scale, so every point
    (1 - a) W + a c W = (1 - a + a c) W of the path computes A's function once its statistics
    are recomputed; interpolated statistics are wrong in between (the variance interpolates
    as (1 - a) + a c^2, not (1 - a + a c)^2), so the path must recompute them at every point."""
    torch.manual_seed(0)
    images = three_unlike_batches()
    labels = np.arange(len(images)) % 10
    model_a = ConvNet(width=4, hidden=16)
    with torch.no_grad():
        model_a.fc2.weight.mul_(20.0)  # logits large enough that the loss responds to the features
    reset_batchnorm_stats(model_a, images, CPU)  # one batch, as the path's resets
    model_b = copy.deepcopy(model_a)
    with torch.no_grad():
        for conv, scale in zip(model_b.convs, CONV_SCALES):
            conv.weight.mul_(scale)
    reset_batchnorm_stats(model_b, images, CPU)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert not torch.allclose(state_a["convs.0.weight"], state_b["convs.0.weight"])
    assert not torch.allclose(state_a["norms.0.running_var"], state_b["norms.0.running_var"])

    eval_sets = {"A": (images, labels)}
    reference = evaluate_point(model_a, eval_sets, CPU)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    curves = path_curves(interpolation_path(ConvNet(width=4, hidden=16), state_a, state_b, alphas, eval_sets, images, CPU))
    assert curves["alpha"] == alphas
    assert curves["A_loss"] == pytest.approx([reference["A_loss"]] * len(alphas), rel=1e-4)
    assert curves["A_accuracy"] == pytest.approx([reference["A_accuracy"]] * len(alphas))


def test_the_path_leaves_the_mid_point_with_the_data_statistics_of_the_mid_point_weights():
    torch.manual_seed(3)
    images = three_unlike_batches(seed=3)
    model_a, model_b = ConvNet(width=4, hidden=8), ConvNet(width=4, hidden=8)
    for norm in batchnorms(model_a) + batchnorms(model_b):
        norm.running_mean.fill_(2.0)
        norm.running_var.fill_(9.0)
    model = ConvNet(width=4, hidden=8)
    interpolation_path(model, model_a.state_dict(), model_b.state_dict(), [0.5], {"A": (images[:10], np.zeros(10, dtype=np.int64))},
                       images, CPU)
    mid = ConvNet(width=4, hidden=8)
    mid.load_state_dict({k: (a + model_b.state_dict()[k]) / 2 if a.is_floating_point() else a for k, a in model_a.state_dict().items()})
    for norm, (mean, var) in zip(batchnorms(model), batch_statistics(mid, images, batch_size=500)):
        torch.testing.assert_close(norm.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(norm.running_var, var, rtol=1e-4, atol=1e-5)


# --- (c) the SRS wiring of the path code ---------------------------------------------------------


def class_images(classes: np.ndarray) -> np.ndarray:
    """Grey images whose brightness encodes a class: class k is the constant 20 k + 10."""
    return np.broadcast_to((20 * classes + 10).astype(np.uint8)[:, None, None, None], (len(classes), 3, 8, 8)).copy()


class BrightnessClassifier(nn.Module):
    """Predicts the class whose brightness (see class_images) is nearest the image's mean."""

    def __init__(self) -> None:
        super().__init__()
        levels = (20 * torch.arange(10, dtype=torch.float32) + 10) / 255.0
        self.centres = nn.Parameter((levels - PIXEL_MEAN) / PIXEL_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = x[:, 0].mean(dim=(1, 2))
        return -50.0 * (brightness[:, None] - self.centres[None]) ** 2


LABELS = np.arange(10)
PRED_ID = LABELS.copy()  # ID accuracy 1.0
PRED_NONE = np.where(LABELS < 6, LABELS, (LABELS + 1) % 10)  # OOD accuracy 0.6; differs from ID on 4
PRED_CF = np.where(LABELS < 2, LABELS, (LABELS + 3) % 10)  # CF accuracy 0.2; differs from ID on 8
PRED_B = np.where(LABELS < 3, LABELS, (LABELS + 5) % 10)  # env B accuracy 0.3 (not an SRS term)
KNOWN = {"ood_accuracy": 0.6, "cf_accuracy": 0.2, "flip_rate": 0.8, "ood_drop": 0.4, "cf_accuracy_drop": 0.8,
         "srs": 0.4 * 0.4 + 0.3 * 0.8 + 0.3 * 0.8}


def srs_eval_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: (class_images(pred), LABELS) for name, pred in (("A", PRED_ID), ("B", PRED_B), ("none", PRED_NONE), ("cf", PRED_CF))}


def test_the_brightness_classifier_predicts_the_encoded_classes():
    from weightlab.vision.training import evaluate

    for pred in (PRED_ID, PRED_NONE, PRED_CF, PRED_B):
        np.testing.assert_array_equal(evaluate(BrightnessClassifier(), class_images(pred), LABELS, CPU).predictions, pred)


def test_evaluate_point_wires_each_evaluation_set_to_its_srs_term():
    metrics = evaluate_point(BrightnessClassifier(), srs_eval_sets(), CPU)
    assert KNOWN["srs"] == pytest.approx(spurious_reliance_score(0.4, 0.8, 0.8)) == pytest.approx(0.64)
    for key, value in KNOWN.items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["A_accuracy"] == 1.0 and metrics["B_accuracy"] == pytest.approx(0.3)
    assert metrics["none_accuracy"] == pytest.approx(0.6) and metrics["cf_accuracy"] == pytest.approx(0.2)
    assert set(metrics) == {f"{n}_{m}" for n in ("A", "B", "none", "cf") for m in ("loss", "accuracy")} | set(KNOWN)


def test_srs_terms_need_all_three_sets():
    sets = srs_eval_sets()
    del sets["cf"]
    assert set(evaluate_point(BrightnessClassifier(), sets, CPU)) == {f"{n}_{m}" for n in ("A", "B", "none") for m in ("loss", "accuracy")}


def test_the_interpolation_path_reports_the_known_srs_terms_at_every_point():
    state = BrightnessClassifier().state_dict()
    curves = path_curves(interpolation_path(BrightnessClassifier(), state, state, [0.0, 0.5, 1.0], srs_eval_sets(), class_images(LABELS), CPU))
    for key, value in KNOWN.items():
        assert curves[key] == pytest.approx([value] * 3), key


def test_mechanism_check_names_env_a_accuracy_the_in_distribution_accuracy():
    sets = srs_eval_sets()
    sets["A"] = (class_images(PRED_B), LABELS)  # ID accuracy 0.3: drops become 0.3 - 0.6 and 0.3 - 0.2
    metrics = mechanism_check(BrightnessClassifier(), sets, CPU)
    assert metrics["id_accuracy"] == metrics["A_accuracy"] == pytest.approx(0.3)
    assert metrics["ood_drop"] == pytest.approx(-0.3) and metrics["cf_accuracy_drop"] == pytest.approx(0.1)
    assert metrics["flip_rate"] == pytest.approx(np.mean(PRED_B != PRED_CF))


# --- the rest of the study's science on known cases (found blind by mutation testing) -----------


def toy_dataset(n_train: int = 20, n_test: int = 20):
    """Training images all 7, test image i all 100 + i (so a test image names its index)."""
    from weightlab.vision.data import ImageDataset, ImageSplit

    train = ImageSplit(np.full((n_train, 3, 32, 32), 7, dtype=np.uint8), np.arange(n_train) % 10)
    test = ImageSplit(np.broadcast_to((100 + np.arange(n_test)).astype(np.uint8)[:, None, None, None], (n_test, 3, 32, 32)).copy(),
                      np.arange(n_test) % 10)
    return ImageDataset("toy", tuple(str(c) for c in range(10)), train, test)


def corner_colours(images: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(c) for c in img[:, 0, 0]) for img in images]


def test_training_set_takes_each_group_s_environment():
    from weightlab.rebasin.environments import training_set
    from weightlab.rebasin.spurious import PATCH_COLOURS

    dataset = toy_dataset()
    colours = {"train_A": np.arange(20) % 10, "train_AB": np.full(20, 3)}
    images, labels = training_set(dataset, colours, "A1", patch_size=4)
    assert corner_colours(images) == [tuple(int(c) for c in PATCH_COLOURS[k % 10]) for k in range(20)]
    np.testing.assert_array_equal(labels, dataset.train.labels)
    assert (images[:, :, 4:, 4:] == 7).all() and (images[:, :, :4, :4] != 7).any()  # a 4 x 4 patch, the rest untouched
    robust, _ = training_set(dataset, colours, "R2", patch_size=4)
    assert set(corner_colours(robust)) == {tuple(int(c) for c in PATCH_COLOURS[3])}


def test_evaluation_sets_are_the_same_test_images_in_four_environments():
    from weightlab.rebasin.environments import evaluation_sets
    from weightlab.rebasin.spurious import PATCH_COLOURS

    dataset = toy_dataset()
    colours = {"test_A": np.full(20, 1), "test_B": np.full(20, 2), "test_none": np.full(20, NO_PATCH), "test_cf": np.full(20, 4)}
    sets = evaluation_sets(dataset, colours, patch_size=4)
    assert list(sets) == ["A", "B", "none", "cf"]
    for name, colour in (("A", 1), ("B", 2), ("cf", 4)):
        images, labels = sets[name]
        assert set(corner_colours(images)) == {tuple(int(c) for c in PATCH_COLOURS[colour])}, name
        np.testing.assert_array_equal(images[:, 0, 10, 10], 100 + np.arange(20))  # test images, in order
        np.testing.assert_array_equal(labels, dataset.test.labels)
    np.testing.assert_array_equal(sets["none"][0], dataset.test.images)  # no patch at all
    subset = evaluation_sets(dataset, colours, patch_size=4, size=10, seed=3)
    indices = subset["A"][0][:, 0, 10, 10].astype(int) - 100
    assert len(indices) == 10 and sorted(dataset.test.labels[indices]) == list(range(10))  # one per class
    for name in ("B", "none", "cf"):  # the same images in every environment
        np.testing.assert_array_equal(subset[name][0][:, 0, 10, 10].astype(int) - 100, indices)
        np.testing.assert_array_equal(subset[name][1], dataset.test.labels[indices])
    drawn = lambda **seed: evaluation_sets(dataset, colours, patch_size=4, size=10, **seed)["A"][0][:, 0, 10, 10]  # noqa: E731
    np.testing.assert_array_equal(drawn(), drawn(seed=0))  # seeded, 0 by default
    assert not np.array_equal(drawn(seed=0), drawn(seed=1))



def test_alignment_rate_counts_patched_examples_only():
    from weightlab.rebasin.spurious import alignment_rate

    assert alignment_rate(np.array([0, 1, -1, 3]), np.array([0, 2, 5, 3])) == pytest.approx(2 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no patched example: NaN, not numpy's mean of an empty slice
        assert np.isnan(alignment_rate(np.array([-1, -1]), np.array([0, 1])))


def test_environment_seed_is_offset_from_the_global_seed():
    from weightlab.rebasin.design import ENVIRONMENT_SEED_OFFSET, environment_seed

    assert ENVIRONMENT_SEED_OFFSET == 101 and environment_seed(7) == 108


def test_interpolation_alphas_two_points_and_rounding():
    from weightlab.rebasin.design import interpolation_alphas, model_pairs

    assert interpolation_alphas(2) == [0.0, 1.0]
    assert interpolation_alphas(4) == [0.0, 0.333333, 0.666667, 1.0]  # six decimals, as JSON shows them
    with pytest.raises(ValueError, match="num_alphas must be at least 2"):
        interpolation_alphas(1)
    with pytest.raises(ValueError, match="unknown pair mode 'some'; choose matched or all"):
        model_pairs([1, 2], "some")


def test_thresholds_from_config_take_both_srs_ranges_as_tuples():
    from weightlab.rebasin.report import Thresholds

    thresholds = Thresholds.from_config({**default_settings("rebasin", "criteria"), "spurious_srs": [0.1, 0.5], "robust_srs": [0.0, 0.2],
                                         "robust_ood_drop_max": 0.3})
    assert thresholds.spurious_srs == (0.1, 0.5) and thresholds.robust_srs == (0.0, 0.2) and thresholds.robust_ood_drop_max == 0.3


def test_barriers_of_reports_srs_barriers_only_when_the_path_has_srs():
    from weightlab.rebasin.barriers import barriers_of

    curves = {"alpha": [0.0, 0.5, 1.0], "A_loss": [1.0, 2.0, 1.5], "A_accuracy": [0.9, 0.6, 0.8], "srs": [0.1, 0.5, 0.3]}
    result = barriers_of(curves, "A")
    assert result == pytest.approx({"loss_barrier": 0.5, "loss_barrier_mean_endpoint": 0.75, "accuracy_barrier": 0.2,
                                    "semantic_barrier": 0.3, "srs_range": 0.4})
    assert set(barriers_of({k: v for k, v in curves.items() if k != "srs"}, "A")) == {"loss_barrier", "loss_barrier_mean_endpoint",
                                                                                  "accuracy_barrier"}


def barriers_with(same_aligned, different_aligned, same_naive):
    entry = lambda b, s: {"loss_barrier": b, "loss_barrier_mean_endpoint": b + 1, "accuracy_barrier": b / 10, "semantic_barrier": s}  # noqa: E731
    pairs = {f"S{i}": {"kind": "same", "naive": entry(n, 0.0), "aligned": entry(a, 0.01)}
             for i, (a, n) in enumerate(zip(same_aligned, same_naive))}
    pairs |= {f"D{i}": {"kind": "different", "naive": entry(a + 1, 0.2), "aligned": entry(a, 0.3)} for i, a in enumerate(different_aligned)}
    return {"barrier_env": "A", "pairs": pairs}


def test_group_means_and_intervals_per_kind_and_method():
    from weightlab.rebasin.barriers import barrier_table
    from weightlab.rebasin.report import group_intervals, group_means

    rows = barrier_table(barriers_with([0.1, 0.3], [1.0, 2.0, 3.0], [1.0, 2.0]))
    means = group_means(rows, "loss_barrier")
    assert means == pytest.approx({"same/naive": 1.5, "same/aligned": 0.2, "different/naive": 3.0, "different/aligned": 2.0})
    assert group_means(rows, "loss_barrier_mean_endpoint")["same/aligned"] == pytest.approx(1.2)
    intervals = group_intervals(rows, "loss_barrier")
    assert list(intervals) == ["same/naive", "same/aligned", "different/naive", "different/aligned"]
    assert intervals["different/aligned"]["n"] == 3 and intervals["same/aligned"]["n"] == 2
    half = 4.302653 / np.sqrt(3)  # t(0.975, 2 df) * sd 1 / sqrt(3)
    assert intervals["different/aligned"]["ci95"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-6)


def test_summary_gathers_every_number():
    from weightlab.rebasin.report import SUMMARY_METRICS, summary

    barriers = barriers_with([0.1, 0.3], [1.0, 2.0], [1.0, 2.0])
    srs = {"A1": {"srs": 0.3}, "R1": {"srs": 0.05}}
    histories = {"A1": [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}], "R1": [{"epoch": 1, "train_loss": 1.5}]}
    matches = [{"ref": "A1", "other": "A2", "iterations": 3, "seconds": 1.5, "fraction_units_moved": {"P": 0.5}, "objective": 9.0}]
    result = summary(barriers, srs, histories, matches)
    assert result["models"] == srs
    assert result["final_training_epoch"] == {"A1": {"epoch": 2, "train_loss": 1.0}, "R1": {"epoch": 1, "train_loss": 1.5}}
    assert result["alignment"] == {"A1-A2": {"iterations": 3, "seconds": 1.5, "fraction_units_moved": {"P": 0.5}, "function_check": None}}
    assert len(result["barriers"]) == 8 and {r["pair"] for r in result["barriers"]} == {"S0", "S1", "D0", "D1"}
    assert set(result["means"]) == set(result["intervals"]) == set(SUMMARY_METRICS)
    assert result["means"]["loss_barrier"]["same/aligned"] == pytest.approx(0.2)
    assert result["means"]["accuracy_barrier"]["different/aligned"] == pytest.approx(0.15)
    assert result["means"]["semantic_barrier"]["different/naive"] == pytest.approx(0.2)
    assert result["intervals"]["loss_barrier"]["same/naive"]["mean"] == pytest.approx(1.5)


def test_semantic_barrier_line_joins_both_non_zero_endpoints():
    from weightlab.rebasin.barriers import semantic_barrier

    assert semantic_barrier([0.0, 0.5, 1.0], [0.2, 0.3, 0.4]) == pytest.approx(0.0)
    assert semantic_barrier([0.0, 0.5, 1.0], [0.2, 0.5, 0.4]) == pytest.approx(0.2)


def test_barriers_document_in_full_for_one_pair():
    from weightlab.rebasin.barriers import DEFINITIONS, barriers_document

    naive = {"alpha": [0.0, 0.5, 1.0], "A_loss": [1.0, 3.0, 2.0], "A_accuracy": [0.9, 0.4, 0.8], "srs": [0.1, 0.6, 0.3],
             "B_loss": [2.0, 2.5, 2.0], "B_accuracy": [0.5, 0.5, 0.5]}
    aligned = {"alpha": [0.0, 0.5, 1.0], "A_loss": [1.0, 1.2, 2.0], "A_accuracy": [0.9, 0.85, 0.8], "srs": [0.1, 0.2, 0.3],
               "B_loss": [2.0, 2.1, 2.0], "B_accuracy": [0.5, 0.5, 0.5]}
    document = barriers_document({"A1-R1": {"ref": "A1", "other": "R1", "naive": naive, "aligned": aligned}}, {"A1-R1": "different"}, "A")
    naive_a = {"loss_barrier": 1.0, "loss_barrier_mean_endpoint": 1.5, "accuracy_barrier": 0.4, "semantic_barrier": 0.4, "srs_range": 0.5}
    naive_b = {"loss_barrier": 0.5, "loss_barrier_mean_endpoint": 0.5, "accuracy_barrier": 0.0, "semantic_barrier": 0.4, "srs_range": 0.5}
    aligned_a = {"loss_barrier": 0.0, "loss_barrier_mean_endpoint": 0.5, "accuracy_barrier": 0.0, "semantic_barrier": 0.0, "srs_range": 0.2}
    aligned_b = {"loss_barrier": 0.1, "loss_barrier_mean_endpoint": 0.1, "accuracy_barrier": 0.0, "semantic_barrier": 0.0, "srs_range": 0.2}
    expected = {
        "barrier_env": "A", "definitions": DEFINITIONS,
        "pairs": {"A1-R1": {
            "ref": "A1", "other": "R1", "kind": "different",
            "naive": {"loss": naive["A_loss"], "accuracy": naive["A_accuracy"], "srs": naive["srs"], "loss_barrier": 1.0,
                      "loss_barrier_mean_endpoint": 1.5, "accuracy_barrier": 0.4, "semantic_barrier": 0.4,
                      "barriers_by_env": {"A": naive_a, "B": naive_b}, "curves": naive},
            "aligned": {"loss": aligned["A_loss"], "accuracy": aligned["A_accuracy"], "srs": aligned["srs"], "loss_barrier": 0.0,
                        "loss_barrier_mean_endpoint": 0.5, "accuracy_barrier": 0.0, "semantic_barrier": 0.0,
                        "barriers_by_env": {"A": aligned_a, "B": aligned_b}, "curves": aligned},
        }},
    }
    assert _close(document, expected)


def _close(got, want) -> bool:
    """Nested equality with floats compared to 1e-9."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (sorted(got), sorted(want))
        return all(_close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        return all(_close(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-9), (got, want)
        return True
    assert got == want
    return True


def test_separate_training_seeds_offset_robust_models_by_500():
    from weightlab.rebasin.design import training_seed

    assert training_seed("R1", 0, shared_seed=False) == 501 and training_seed("R2", 1, shared_seed=False) == 1502
    assert training_seed("A2", 1, shared_seed=False) == 1002


def test_reset_images_are_distinct_training_images_drawn_by_the_seed():
    from weightlab.rebasin.environments import reset_images
    from weightlab.vision.data import ImageDataset, ImageSplit

    n = 20
    train = ImageSplit(np.broadcast_to((10 * np.arange(n)).astype(np.uint8)[:, None, None, None], (n, 1, 32, 32)).copy(), np.arange(n) % 10)
    dataset = ImageDataset("toy", tuple(str(c) for c in range(10)), train, train)
    colours = {"train_A": np.zeros(n, dtype=np.int64), "train_AB": np.full(n, 3, dtype=np.int64)}
    every = reset_images(dataset, colours, ["A1", "A2"], patch_size=4, size=n, seed=0)
    np.testing.assert_array_equal(every[:, 0, 20, 20], 10 * np.arange(n))  # all 20, each once, in order
    some = reset_images(dataset, colours, ["A1", "R1"], patch_size=4, size=12, seed=5)
    assert len(some) == 12 and len(set(some[:6, 0, 20, 20])) == 6 and len(set(some[6:, 0, 20, 20])) == 6  # 6 per environment
    np.testing.assert_array_equal(some, reset_images(dataset, colours, ["A1", "R1"], patch_size=4, size=12, seed=5))
    assert not np.array_equal(some, reset_images(dataset, colours, ["A1", "R1"], patch_size=4, size=12, seed=6))


# --- the hypothesis report: each criterion's record, and its bounds --------------------------------

PASSING_SRS = {"A1": {"srs": 0.3, "ood_drop": 0.3, "id_accuracy": 0.95}, "A2": {"srs": 0.25, "ood_drop": 0.25, "id_accuracy": 0.95},
               "R1": {"srs": 0.07, "ood_drop": 0.02, "id_accuracy": 0.95}, "R2": {"srs": 0.06, "ood_drop": 0.01, "id_accuracy": 0.95}}
EXACT = {"A1-A2": 1e-6, "R1-R2": 1e-6, "A1-R1": 1e-6, "A2-R2": 1e-6}


def report_for(srs=PASSING_SRS, same_aligned=(0.05, 0.08), different_aligned=(0.5, 0.6), same_naive=(1.0, 1.0), alignment=EXACT):
    from weightlab.rebasin.report import hypothesis_report

    return hypothesis_report(barriers_with(list(same_aligned), list(different_aligned), list(same_naive)), srs, thresholds(), alignment=alignment)


def records(report) -> dict:
    return {c["id"]: c for c in report["criteria"]}


EXPECTATIONS = {  # the original study's expected results, as each expectation cites them
    "spurious_models_high_srs": "expected result 1: High SRS (~0.2-0.4)",
    "spurious_models_large_ood_drop": "expected result 1: Large OOD accuracy drop (>20%)",
    "robust_models_low_srs": "expected result 2: Low SRS (~0.05-0.1)",
    "robust_models_small_ood_drop": "expected result 2: Small OOD accuracy drop (<10%)",
    "same_mechanism_low_barrier_after_rebasin": "expected result 3: Low loss barriers after Re-Basin",
    "different_mechanism_higher_barrier_after_rebasin": "expected result 4: Higher loss barriers even after Re-Basin",
    "different_mechanism_srs_varies_along_path": "expected result 4: Significant SRS variation along interpolation path",
}


def test_each_expectation_records_its_statement_source_threshold_and_measured_values():
    report = report_for()
    by_id = records(report)
    assert [c["id"] for c in report["criteria"] if c["kind"] == "expectation"] == list(EXPECTATIONS)
    for name, quote in EXPECTATIONS.items():
        assert by_id[name]["source"].startswith(quote), name
        assert by_id[name]["statement"].startswith(("every", "after alignment")), name
        assert by_id[name]["verdict"] == "pass", by_id[name]
    assert "spurious (A)" in by_id["spurious_models_high_srs"]["statement"] and "[0.2, 0.4]" in by_id["spurious_models_high_srs"]["statement"]
    assert "robust (R)" in by_id["robust_models_low_srs"]["statement"] and "[0.05, 0.1]" in by_id["robust_models_low_srs"]["statement"]
    assert "20%" in by_id["spurious_models_large_ood_drop"]["statement"] and "10%" in by_id["robust_models_small_ood_drop"]["statement"]
    assert by_id["spurious_models_high_srs"]["value"]["A1"] == 0.3 and by_id["spurious_models_high_srs"]["value"]["A2"] == 0.25
    assert by_id["robust_models_small_ood_drop"]["value"]["R1"] == 0.02
    assert by_id["different_mechanism_higher_barrier_after_rebasin"]["value"]["difference"] == pytest.approx(0.55 - 0.065)
    assert report["verdict"] == "held" and report["barrier_env"] == "A"


@pytest.mark.parametrize("model, values, criterion, held", [
    ("A1", {"srs": 0.2, "ood_drop": 0.3}, "spurious_models_high_srs", True),  # the band includes its ends
    ("A1", {"srs": 0.4, "ood_drop": 0.3}, "spurious_models_high_srs", True),
    ("A1", {"srs": 0.41, "ood_drop": 0.3}, "spurious_models_high_srs", False),
    ("A1", {"srs": 0.3, "ood_drop": 0.2}, "spurious_models_large_ood_drop", False),  # more than 20%: 20% is not enough
    ("R1", {"srs": 0.05, "ood_drop": 0.02}, "robust_models_low_srs", True),
    ("R1", {"srs": 0.1, "ood_drop": 0.02}, "robust_models_low_srs", True),
    ("R1", {"srs": 0.07, "ood_drop": 0.1}, "robust_models_small_ood_drop", False),  # less than 10%
    ("R1", {"srs": 0.07, "ood_drop": 0.5}, "robust_models_small_ood_drop", False),
])
def test_criteria_bounds(model, values, criterion, held):
    report = report_for(srs={**PASSING_SRS, model: {**values, "id_accuracy": 0.95}})
    by_id = records(report)
    assert by_id[criterion]["verdict"] == ("pass" if held else "fail")
    assert report["verdict"] == ("held" if held else "not held")
    failed = {c["id"] for c in report["criteria"] if c["kind"] == "expectation" and c["verdict"] != "pass"}
    assert failed == (set() if held else {criterion})


def test_a_model_that_does_not_learn_makes_every_expectation_not_testable():
    report = report_for(srs={**PASSING_SRS, "R2": {**PASSING_SRS["R2"], "id_accuracy": 0.5}})
    assert [c["verdict"] for c in report["criteria"] if c["kind"] == "expectation"] == ["not_testable"] * len(EXPECTATIONS)
    assert report["verdict"] == "not testable"


def test_an_inexact_alignment_makes_the_barrier_expectations_not_testable_only():
    by_id = records(report_for(alignment={**EXACT, "A1-R1": 0.5}))
    assert by_id["same_mechanism_low_barrier_after_rebasin"]["verdict"] == "not_testable"
    assert by_id["spurious_models_high_srs"]["verdict"] == "pass"


def test_our_checks_and_their_strict_comparisons():
    by_id = records(report_for())
    assert by_id["alignment_lowers_same_mechanism_barriers"]["kind"] == "check"
    assert by_id["alignment_lowers_same_mechanism_barriers"]["value"] == {"naive": {"S0": 1.0, "S1": 1.0}, "aligned": {"S0": 0.05, "S1": 0.08}}
    assert by_id["alignment_lowers_same_mechanism_barriers"]["verdict"] == "pass"
    assert by_id["semantic_barrier_higher_for_different_mechanisms"]["value"]["aligned_same_mean"] == pytest.approx(0.01)
    assert by_id["semantic_barrier_higher_for_different_mechanisms"]["value"]["aligned_different_mean"] == pytest.approx(0.3)
    equal = records(report_for(same_naive=(0.05, 1.0)))  # equal: not lowered
    assert equal["alignment_lowers_same_mechanism_barriers"]["verdict"] == "fail"


@pytest.mark.parametrize("case, criterion, held", [
    (dict(same_aligned=(0.1, 0.1)), "same_mechanism_low_barrier_after_rebasin", True),  # at most 0.1
    (dict(same_aligned=(0.05, 0.5), different_aligned=(0.5, 0.6)), "different_mechanism_higher_barrier_after_rebasin", False),  # not higher
])
def test_barrier_criteria_bounds(case, criterion, held):
    assert records(report_for(**case))[criterion]["verdict"] == ("pass" if held else "fail")


def test_the_semantic_barrier_threshold_is_inclusive():
    from weightlab.rebasin.report import hypothesis_report

    flat = barriers_with([0.05, 0.08], [0.5, 0.6], [1.0, 1.0])
    for pair in flat["pairs"].values():
        pair["aligned"]["semantic_barrier"] = 0.05  # the same on every path, and exactly the threshold
    by_id = records(hypothesis_report(flat, PASSING_SRS, thresholds(), alignment=EXACT))
    assert by_id["different_mechanism_srs_varies_along_path"]["verdict"] == "pass"  # at least 0.05
    assert by_id["semantic_barrier_higher_for_different_mechanisms"]["verdict"] == "fail"


# --- environments: the colour draws ------------------------------------------------------------------


def test_misaligned_and_counterfactual_colours_are_every_other_class_uniformly():
    from weightlab.rebasin.spurious import counterfactual_colours, patch_colours

    labels = np.arange(30_000) % 10
    colours = patch_colours(labels, 0.0, np.random.default_rng(0))  # never aligned: always another class
    assert colours.dtype == np.int64 and not np.any(colours == labels)
    offsets = (colours - labels) % 10
    assert np.bincount(offsets, minlength=10)[1:] / len(labels) == pytest.approx(np.full(9, 1 / 9), abs=0.01)  # 1..9 alike
    swapped = counterfactual_colours(np.array([NO_PATCH, *labels[:29_999]]), np.random.default_rng(1))
    assert swapped.dtype == np.int64 and swapped[0] == NO_PATCH  # no patch stays no patch
    assert not np.any(swapped[1:] == labels[:29_999])
    assert np.bincount((swapped[1:] - labels[:29_999]) % 10, minlength=10)[1:] / 29_999 == pytest.approx(np.full(9, 1 / 9), abs=0.01)


def test_mixed_colours_accept_every_share_from_0_to_1():
    from weightlab.rebasin.spurious import mixed_colours

    a, b = np.zeros(100, dtype=np.int64), np.ones(100, dtype=np.int64)
    assert (mixed_colours(a, b, np.random.default_rng(0), share_b=1.0) == 1).all()
    assert (mixed_colours(a, b, np.random.default_rng(0), share_b=0.0) == 0).all()
    with pytest.raises(ValueError, match="must lie in"):
        mixed_colours(a, b, np.random.default_rng(0), share_b=1.5)


def test_build_environments_is_seeded_and_keeps_the_number_of_classes():
    from weightlab.rebasin.spurious import build_environments

    labels = np.arange(3000) % 3
    envs = build_environments(labels, labels, 0.5, 0.1, seed=2, num_classes=3)
    assert set(envs) == {"train_A", "train_B", "train_AB", "test_A", "test_B", "test_none", "test_cf"}
    for name in ("train_A", "train_B", "train_AB", "test_A", "test_B", "test_cf"):
        assert set(np.unique(envs[name])) == {0, 1, 2}, name
    assert np.mean(envs["test_B"] == labels) == pytest.approx(0.1, abs=0.03) and envs["test_none"].dtype == np.int64
    again = build_environments(labels, labels, 0.5, 0.1, seed=2, num_classes=3)
    assert all(np.array_equal(envs[k], again[k]) for k in envs)


def test_srs_terms_with_exactly_the_three_sets_and_a_one_point_path():
    from weightlab.rebasin.paths import PathPoint

    sets = {name: value for name, value in srs_eval_sets().items() if name != "B"}
    metrics = evaluate_point(BrightnessClassifier(), sets, CPU)
    assert metrics["srs"] == pytest.approx(KNOWN["srs"])
    assert path_curves([PathPoint(0.5, {"A_loss": 1.0})]) == {"alpha": [0.5], "A_loss": [1.0]}


def test_align_passes_its_iteration_limit_and_seed_to_the_matching():
    from weightlab.rebasin.paths import align
    from weightlab.rebasin.permutations import weight_matching

    torch.manual_seed(0)
    a, b = ConvNet(width=8, hidden=16), ConvNet(width=8, hidden=16)
    assert align(a, b, max_iter=1)[1].iterations == 1
    trainable = {n for n, _ in a.named_parameters()}
    params = lambda m: {k: v for k, v in m.state_dict().items() if k in trainable}  # noqa: E731
    for seed in (0, 1):
        expected = weight_matching(a.permutation_spec(), params(a), params(b), seed=seed)
        assert align(a, b, seed=seed)[1].objective_history == expected.objective_history
    assert align(a, b)[1].objective_history == weight_matching(a.permutation_spec(), params(a), params(b), seed=0).objective_history


def test_the_verdict_names_each_expectation_that_did_not_hold():
    held = report_for()
    assert held["verdict"] == "held"
    failed = report_for(srs={**PASSING_SRS, "R1": {"srs": 0.07, "ood_drop": 0.5, "id_accuracy": 0.95}})
    assert failed["verdict"] == "not held"
    assert "robust_models_small_ood_drop" in failed["reason"] and "robust_models_low_srs" not in failed["reason"]


def test_without_same_mechanism_pairs_there_is_nothing_to_compare_with():
    from weightlab.rebasin.report import hypothesis_report

    report = hypothesis_report(barriers_with([], [0.5, 0.6], []), PASSING_SRS, thresholds(), alignment=EXACT)
    criterion = records(report)["different_mechanism_higher_barrier_after_rebasin"]
    assert criterion["verdict"] == "not_evaluable" and criterion["interval"] is None


# --- the hypothesis report in full, and its edges (mutation survivors) -------------------------------

T_975_1DF = 12.706204736174698  # Student t quantile 0.975 with 1 degree of freedom


def two_value_interval(a: float, b: float) -> list[float]:
    """95% t interval of the mean of two values: mean +- t(1 df) * sd / sqrt(2) = mean +- t * |a - b| / 2."""
    return [(a + b) / 2 - T_975_1DF * abs(a - b) / 2, (a + b) / 2 + T_975_1DF * abs(a - b) / 2]


def welch_interval(first: list[float], second: list[float]) -> list[float]:
    """95% Welch interval of mean(first) - mean(second), from the textbook formula (Welch-Satterthwaite df)."""
    from scipy import stats

    va, vb = np.var(first, ddof=1) / len(first), np.var(second, ddof=1) / len(second)
    df = (va + vb) ** 2 / (va ** 2 / (len(first) - 1) + vb ** 2 / (len(second) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    difference = np.mean(first) - np.mean(second)
    return [float(difference - half), float(difference + half)]


LEARNS, EXACT_ALIGNMENT, DIFFER = "models_learn_the_task", "alignment_preserves_function", "mechanisms_differ"


def test_the_report_of_a_passing_run_in_full():
    """Every record of report_for()'s default case (two A and two R models, two same- and two
    different-mechanism pairs), its numbers worked out by hand."""
    report = report_for()
    record = lambda id_, statement, source, kind, threshold, value, interval=None, reason="", needs=(): {  # noqa: E731
        "id": id_, "statement": statement, "source": source, "kind": kind, "threshold": threshold, "value": value,
        "interval": interval, "verdict": "pass", "reason": reason, "depends_on": list(needs)}
    expected = {
        "study": "rebasin",
        "hypothesis": "Weight matching connects models that use the same mechanism but leaves a loss and a "
                      "semantic barrier between a spurious and a robust model.",
        "verdict": "held", "reason": "all 7 expectations pass with every precondition met",
        "counts": {"precondition": {"pass": 3, "fail": 0, "not_evaluable": 0, "not_testable": 0},
                   "expectation": {"pass": 7, "fail": 0, "not_evaluable": 0, "not_testable": 0},
                   "check": {"pass": 2, "fail": 0, "not_evaluable": 0, "not_testable": 0}},
        "criteria": [
            record(LEARNS, "every model reaches ID accuracy (env A) of at least 0.9", "ours", "precondition",
                   ">= 0.9 for every model", {"A1": 0.95, "A2": 0.95, "R1": 0.95, "R2": 0.95}),
            record(EXACT_ALIGNMENT, "every aligned checkpoint computes its source model's function (the permutation is exact): "
                   "largest |logit difference| on the first 256 test images of env A", "ours", "precondition",
                   "< 0.0001 for every pair", dict(EXACT)),
            record(DIFFER, "the A models lean on the patch more than the R models: SRS of every A model above every R model",
                   "ours", "precondition", "min SRS(A) > max SRS(R)", {"A": {"A1": 0.3, "A2": 0.25}, "R": {"R1": 0.07, "R2": 0.06}}),
            record("spurious_models_high_srs", "every spurious (A) model has SRS in [0.2, 0.4]", "expected result 1: High SRS (~0.2-0.4)",
                   "expectation", "in [0.2, 0.4] for every model", {"A1": 0.3, "A2": 0.25, "mean": 0.275},
                   two_value_interval(0.3, 0.25), needs=(LEARNS,)),
            record("spurious_models_large_ood_drop", "every spurious (A) model loses more than 20% accuracy without the patch",
                   "expected result 1: Large OOD accuracy drop (>20%)", "expectation", "> 0.2 for every A model",
                   {"A1": 0.3, "A2": 0.25, "mean": 0.275}, two_value_interval(0.3, 0.25), needs=(LEARNS,)),
            record("robust_models_low_srs", "every robust (R) model has SRS in [0.05, 0.1]", "expected result 2: Low SRS (~0.05-0.1)",
                   "expectation", "in [0.05, 0.1] for every model", {"R1": 0.07, "R2": 0.06, "mean": 0.065},
                   two_value_interval(0.07, 0.06), needs=(LEARNS,)),
            record("robust_models_small_ood_drop", "every robust (R) model loses less than 10% accuracy without the patch",
                   "expected result 2: Small OOD accuracy drop (<10%)", "expectation", "< 0.1 for every R model",
                   {"R1": 0.02, "R2": 0.01, "mean": 0.015}, two_value_interval(0.02, 0.01), needs=(LEARNS,)),
            record("same_mechanism_low_barrier_after_rebasin", "every same-mechanism pair's aligned loss barrier is at most 0.1",
                   "expected result 3: Low loss barriers after Re-Basin (the original gives no number; the threshold is ours)",
                   "expectation", "<= 0.1 for every pair (ours)", {"S0": 0.05, "S1": 0.08, "mean": 0.065},
                   two_value_interval(0.05, 0.08), "verdict reads every pair; the interval is the mean's over pairs",
                   (LEARNS, EXACT_ALIGNMENT)),
            record("different_mechanism_higher_barrier_after_rebasin",
                   "after alignment, different-mechanism pairs have a higher loss barrier than same-mechanism pairs",
                   "expected result 4: Higher loss barriers even after Re-Basin", "expectation",
                   "95% interval of mean(different) − mean(same) aligned loss barrier above 0",
                   {"different": {"D0": 0.5, "D1": 0.6, "mean": 0.55}, "same": {"S0": 0.05, "S1": 0.08, "mean": 0.065},
                    "difference": 0.485}, welch_interval([0.5, 0.6], [0.05, 0.08]),
                   "verdict reads the interval: mean difference (different − same) 0.485, 95% Welch interval above 0",
                   (LEARNS, EXACT_ALIGNMENT, DIFFER)),
            record("different_mechanism_srs_varies_along_path",
                   "every different-mechanism aligned path has a semantic barrier of at least 0.05",
                   "expected result 4: Significant SRS variation along interpolation path (the original gives no number; "
                   "the threshold is ours)", "expectation", ">= 0.05 for every pair (ours)", {"D0": 0.3, "D1": 0.3, "mean": 0.3},
                   [0.3, 0.3], needs=(LEARNS, EXACT_ALIGNMENT, DIFFER)),
            record("alignment_lowers_same_mechanism_barriers",
                   "for every same-mechanism pair the aligned loss barrier is below the naive one", "ours", "check",
                   "aligned < naive for every pair", {"naive": {"S0": 1.0, "S1": 1.0}, "aligned": {"S0": 0.05, "S1": 0.08}},
                   needs=(LEARNS, EXACT_ALIGNMENT)),
            record("semantic_barrier_higher_for_different_mechanisms",
                   "after alignment, SRS deviates more from a straight line along different-mechanism paths (mean over pairs)",
                   "ours", "check", "mean(different) > mean(same) semantic barrier",
                   {"aligned_same_mean": 0.01, "aligned_different_mean": 0.3, "difference": 0.29}, [0.29, 0.29],
                   "the interval is the Welch interval of the difference", (LEARNS, EXACT_ALIGNMENT, DIFFER)),
        ],
        "thresholds": {"spurious_srs": (0.2, 0.4), "spurious_ood_drop_min": 0.2, "robust_srs": (0.05, 0.1), "robust_ood_drop_max": 0.1,
                       "same_aligned_barrier_max": 0.1, "different_semantic_barrier_min": 0.05, "id_accuracy_min": 0.9,
                       "alignment_logit_gap_max": 0.0001},
        "barrier_env": "A",
    }
    assert _close(report, expected)


def test_preconditions_at_their_bounds():
    """ID accuracy exactly at its minimum passes; a logit gap exactly at its maximum fails; an A model
    whose SRS equals an R model's does not differ from it."""
    from weightlab.rebasin.report import preconditions

    srs = {"A1": {"srs": 0.3, "id_accuracy": 0.9}, "R1": {"srs": 0.3, "id_accuracy": 0.95}}
    learns, exact, differ = preconditions(srs, {"A1-R1": 1e-4}, thresholds())
    assert (learns.verdict, exact.verdict, differ.verdict) == ("pass", "fail", "fail")
    assert exact.reason == "" and exact.value == {"A1-R1": 1e-4}
    assert preconditions(srs, {"A1-R1": 0.99e-4}, thresholds())[1].verdict == "pass"
    assert preconditions({**srs, "A1": {"srs": 0.31, "id_accuracy": 0.89}}, None, thresholds())[0].verdict == "fail"


def test_preconditions_without_an_alignment_check_or_without_a_group():
    from weightlab.rebasin.report import preconditions

    _, exact, _ = preconditions(PASSING_SRS, None, thresholds())
    assert (exact.verdict, exact.value, exact.reason) == ("not_evaluable", {}, "no alignment check recorded (re-run rebasin_align)")
    only_a = {m: v for m, v in PASSING_SRS.items() if m.startswith("A")}
    only_r = {m: v for m, v in PASSING_SRS.items() if m.startswith("R")}
    for srs, value in ((only_a, {"A": {"A1": 0.3, "A2": 0.25}, "R": {}}), (only_r, {"A": {}, "R": {"R1": 0.07, "R2": 0.06}})):
        differ = preconditions(srs, EXACT, thresholds())[2]
        assert (differ.verdict, differ.value, differ.reason) == ("not_evaluable", value, "no measured value")


def test_a_report_without_robust_models_records_their_group_as_empty():
    by_id = records(report_for(srs={m: v for m, v in PASSING_SRS.items() if m.startswith("A")}))
    assert by_id["robust_models_low_srs"]["value"] == {} and by_id["robust_models_low_srs"]["interval"] is None
    assert by_id["spurious_models_high_srs"]["value"] == {"A1": 0.3, "A2": 0.25, "mean": pytest.approx(0.275)}
    assert by_id[DIFFER]["verdict"] == "not_evaluable"
    assert by_id["different_mechanism_higher_barrier_after_rebasin"]["verdict"] == "not_testable"


def test_without_same_mechanism_pairs_the_contrast_says_why_it_is_not_evaluable():
    from weightlab.rebasin.report import hypothesis_report

    report = hypothesis_report(barriers_with([], [0.5, 0.6], []), PASSING_SRS, thresholds(), alignment=EXACT)
    criterion = records(report)["different_mechanism_higher_barrier_after_rebasin"]
    assert criterion["reason"] == "needs at least two same- and two different-mechanism pairs for an interval of the difference"
    assert criterion["value"]["same"] == {} and criterion["value"]["different"] == {"D0": 0.5, "D1": 0.6, "mean": pytest.approx(0.55)}
    assert np.isnan(criterion["value"]["difference"])
    assert report["verdict"] == "not testable"
    assert report["reason"] == "different_mechanism_higher_barrier_after_rebasin not evaluable"


def test_equal_barriers_of_both_kinds_are_not_higher():
    """Constant, equal aligned barriers: the difference's interval is exactly [0, 0], not above 0."""
    by_id = records(report_for(same_aligned=(0.05, 0.05), different_aligned=(0.05, 0.05)))
    higher = by_id["different_mechanism_higher_barrier_after_rebasin"]
    assert higher["interval"] == [0.0, 0.0] and higher["verdict"] == "fail"


def test_paths_without_srs_have_no_semantic_barrier_and_no_mean():
    """A pair whose path has no SRS (barriers_of leaves the semantic barrier out) records None, and
    the mean over pairs of nothing is None, not NaN (criteria.json is JSON). (The verdict is left
    unpinned: the code says "fail" where nothing was measured; reported for a decision.)"""
    from weightlab.rebasin.report import hypothesis_report

    barriers = barriers_with([0.05, 0.08], [0.5, 0.6], [1.0, 1.0])
    for key in ("D0", "D1"):
        barriers["pairs"][key]["aligned"]["semantic_barrier"] = None
    criterion = records(hypothesis_report(barriers, PASSING_SRS, thresholds(), alignment=EXACT))["different_mechanism_srs_varies_along_path"]
    assert criterion["value"] == {"D0": None, "D1": None, "mean": None}
    assert criterion["interval"] is None


def test_alignment_gaps_per_pair_and_none_when_a_record_lacks_its_check():
    from weightlab.rebasin.report import alignment_gaps

    checked = [{"ref": "A1", "other": "A2", "function_check": {"max_abs_logit_difference": 2e-6, "images": 256}},
               {"ref": "A1", "other": "R1", "function_check": {"max_abs_logit_difference": 0.0}}]
    assert alignment_gaps(checked) == {"A1-A2": 2e-6, "A1-R1": 0.0}
    assert alignment_gaps([*checked, {"ref": "R1", "other": "R2"}]) is None  # written by older code
    assert alignment_gaps([*checked, {"ref": "R1", "other": "R2", "function_check": {}}]) is None
    assert alignment_gaps([]) is None


def test_paths_share_their_alpha_0_point_and_each_ends_at_its_own_b():
    """At alpha 0 every path is A: evaluated once, the same point on every path. At alpha 1 the
    'aligned' path is B, whose centres are A's moved one class down, so it predicts class j - 1
    for an image of class j: env A accuracy 0, and the no-patch images (class j + 1 for j >= 6)
    are read right 4 times in 10."""
    from weightlab.rebasin.paths import interpolation_paths

    state = BrightnessClassifier().state_dict()
    shifted = {"centres": torch.roll(state["centres"], -1)}  # centre k is A's centre k + 1
    paths = interpolation_paths(BrightnessClassifier(), state, {"naive": state, "aligned": shifted}, [0.0, 1.0], srs_eval_sets(),
                                class_images(LABELS), CPU)
    assert list(paths) == ["naive", "aligned"] and [p.alpha for p in paths["aligned"]] == [0.0, 1.0]
    assert paths["aligned"][0] is paths["naive"][0]
    for key, value in KNOWN.items():
        assert paths["naive"][0].metrics[key] == pytest.approx(value) and paths["naive"][1].metrics[key] == pytest.approx(value), key
    end = paths["aligned"][1].metrics
    assert end["A_accuracy"] == 0.0 and end["none_accuracy"] == pytest.approx(0.4) and end["ood_drop"] == pytest.approx(-0.4)
