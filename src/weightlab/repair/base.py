"""The repair study's base model: training it with the shared loop, and its evaluation
(accuracy, per-class accuracy, confusion matrix, the size of every edit-set pool). Imports no LP
code: the rules that train and evaluate the base model do not re-run when the repair changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlab.checkpoints import build_model
from weightlab.repair.models import ARCHITECTURES
from weightlab.vision.data import ImageDataset, ImageSplit
from weightlab.vision.training import TrainConfig, evaluate, train_classifier


@dataclass
class BaseModel:
    """A trained base model, what rebuilds it, its training history and test accuracy."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    history: list[dict]
    test_accuracy: float


def train_base_model(
    dataset: ImageDataset, model_config: Mapping[str, Any], train_config: TrainConfig, monitor_size: int,
    device: torch.device, generator: torch.Generator,
) -> BaseModel:
    """Build the configured model (seed torch first) and train it with the shared loop; the
    first `monitor_size` test images are evaluated after every epoch."""
    arch = model_config["arch"]
    arch_kwargs = {k: v for k, v in model_config.items() if k != "arch"} | {"num_classes": len(dataset.classes)}
    model = build_model(ARCHITECTURES, arch, **arch_kwargs)
    monitor = {"test": (dataset.test.images[:monitor_size], dataset.test.labels[:monitor_size])}
    history = train_classifier(
        model, dataset.train.images, dataset.train.labels, train_config, device, generator,
        eval_sets=monitor, desc="train repair base",
    )
    accuracy = evaluate(model, dataset.test.images, dataset.test.labels, device).accuracy
    return BaseModel(model, arch, arch_kwargs, history, accuracy)


def evaluate_base_model(
    model: nn.Module, test: ImageSplit, classes: Sequence[str], device: torch.device,
) -> tuple[dict[str, Any], np.ndarray]:
    """The base model's evaluation (`base_evaluation`) and its test predictions."""
    predictions = evaluate(model, test.images, test.labels, device).predictions
    return base_evaluation(test.labels, predictions, classes), predictions


def accuracy_on(predictions: np.ndarray, labels: np.ndarray, indices: Sequence[int] | np.ndarray | None = None) -> float:
    """Accuracy over `indices` (all when None); NaN for an empty selection."""
    if indices is not None:
        predictions, labels = predictions[indices], labels[indices]
    return float((predictions == labels).mean()) if len(labels) else float("nan")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def base_evaluation(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Test accuracy, per-class accuracy, confusion matrix and the size of every edit-set pool."""
    counts = confusion_matrix(labels, predictions, len(classes))
    per_class = counts.diagonal() / np.maximum(counts.sum(1), 1)
    wrong = counts.sum(1) - counts.diagonal()
    return {
        "test_accuracy": accuracy_on(predictions, labels),
        "num_test": int(len(labels)),
        "classes": list(classes),
        "per_class_accuracy": {name: float(a) for name, a in zip(classes, per_class)},
        "confusion_matrix": counts.tolist(),
        "misclassified_per_class": {name: int(w) for name, w in zip(classes, wrong)},
        "misclassified_total": int(wrong.sum()),
    }
