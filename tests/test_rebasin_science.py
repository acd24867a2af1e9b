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

import numpy as np
import pytest
import torch
from torch import nn

from weightlab.data import PIXEL_MEAN, PIXEL_STD
from weightlab.models import ConvNet
from weightlab.rebasin.paths import evaluate_point, interpolation_path, mechanism_check, path_curves
from weightlab.rebasin.spurious import spurious_reliance_score
from weightlab.training import reset_batchnorm_stats

CPU = torch.device("cpu")


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def batch_statistics(model: nn.Module, images: np.ndarray, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm: the mean over batches of each batch's channel mean and unbiased variance of
    its input, measured with hooks in training mode (where the input does not depend on the
    running statistics)."""
    from weightlab.data import to_float_batch

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
    from weightlab.data import to_float_batch

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
    from weightlab.training import evaluate

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
