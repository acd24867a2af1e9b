"""Checkpoints, atomic writes, provenance, determinism and the training loop."""

import json
import math

import numpy as np
import pytest
import torch

from weightlab.checkpoints import load_checkpoint, save_checkpoint
from weightlab.errors import InputError
from weightlab.io import atomic_path, read_json, write_json
from weightlab.provenance import provenance
from weightlab.rebasin.models import ARCHITECTURES, ConvNet
from weightlab.runtime import seed_everything
from weightlab.vision.training import TrainConfig, evaluate, lr_factor, train_classifier


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    model = ConvNet(width=4, hidden=8, norm="layer")
    save_checkpoint(tmp_path / "m.pt", model, "convnet", {"width": 4, "hidden": 8, "norm": "layer"}, {"name": "x"})
    loaded, payload = load_checkpoint(tmp_path / "m.pt", ARCHITECTURES)
    assert isinstance(loaded, ConvNet) and payload["metadata"] == {"name": "x"}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_loading_something_else_is_a_clear_error(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a weightlab checkpoint"):
        load_checkpoint(tmp_path / "other.pt", ARCHITECTURES)
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", ARCHITECTURES)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_provenance_has_config_seed_commit_versions():
    block = provenance({"lr": 0.1}, 7)
    assert block["config"] == {"lr": 0.1} and block["seed"] == 7
    assert block["git_commit"]
    assert block["versions"]["torch"].startswith("2.") and block["versions"]["python"]
    json.dumps(block)


def test_lr_schedule_shapes():
    assert lr_factor(0, 100, "triangle", 0.2) == 0.0
    assert lr_factor(20, 100, "triangle", 0.2) == pytest.approx(1.0)
    assert lr_factor(100, 100, "triangle", 0.2) == pytest.approx(0.0)
    assert lr_factor(50, 100, "cosine", 0.0) == pytest.approx(0.5)


def _separable_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = np.zeros((n, 1, 32, 32), dtype=np.uint8)
    images[labels == 1, :, :16] = 255  # class 1: bright top half
    images[labels == 0, :, 16:] = 255
    return images, labels.astype(np.int64)


def _train(seed):
    images, labels = _separable_data()
    generator = seed_everything(seed)
    model = ConvNet(width=4, hidden=8, num_classes=2)
    history = train_classifier(model, images, labels, TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="triangle", warmup=0.2), torch.device("cpu"), generator)
    return model, history, images, labels


def test_training_learns_and_is_deterministic():
    model_a, history_a, images, labels = _train(seed=5)
    model_b, history_b, _, _ = _train(seed=5)
    assert evaluate(model_a, images, labels, torch.device("cpu")).accuracy == 1.0
    assert history_a == [dict(h, seconds=history_a[i]["seconds"]) for i, h in enumerate(history_b)]
    for name, tensor in model_a.state_dict().items():
        assert torch.equal(model_b.state_dict()[name], tensor), name


def test_folder_written_atomically_or_not_at_all(tmp_path):
    from weightlab.io import write_folder_atomically

    target = tmp_path / "model"
    write_folder_atomically(target, lambda tmp: (tmp / "a.txt").write_text("1"))
    assert (target / "a.txt").read_text() == "1"

    def crash(tmp):
        (tmp / "b.txt").write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_folder_atomically(tmp_path / "other", crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_mean_interval_is_the_student_t_interval():
    from weightlab.stats import mean_interval

    result = mean_interval([1.0, 2.0, 3.0, None])
    assert result["n"] == 3 and result["mean"] == pytest.approx(2.0)
    half = 4.302653 * 1.0 / np.sqrt(3)  # t(0.975, 2 df) * sd / sqrt(n)
    assert result["ci95"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-6)
    assert mean_interval([0.5])["ci95"] is None and mean_interval([0.4, 0.4])["ci95"] == [0.4, 0.4]


def test_cohens_d_on_known_samples_and_its_one_edge_rule():
    from weightlab.stats import cohens_d

    assert cohens_d([1, 2, 3], [4, 5, 6]) == pytest.approx(-3.0)  # means 2 and 5, both sample sd 1
    assert cohens_d([2, 4, 6, 8], [1, 3, 5, 7]) == pytest.approx(1 / np.sqrt(20 / 3))
    assert cohens_d([1, 2, 3, float("nan")], [4, 5, 6, float("inf")]) == pytest.approx(-3.0)  # non-finite dropped
    assert math.isnan(cohens_d([1.0], [2.0, 3.0]))  # one value: its sample variance is undefined
    assert cohens_d([1, 1], [1, 1]) == 0.0  # no spread, no difference
    assert cohens_d([0.5, 0.5], [0.2, 0.2]) == math.inf and cohens_d([0.2, 0.2], [0.5, 0.5]) == -math.inf
