"""One training loop and one evaluation loop for every study that trains an image classifier."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from weightlab.batches import batch_indices
from weightlab.vision.data import to_float_batch


@dataclass(frozen=True)
class TrainConfig:
    """A `train:` block of the config (rebasin.train, repair.train): its defaults live in
    config.yaml and the schema; build it with weightlab.config.settings_dataclass."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    schedule: str  # "triangle": linear warm-up to lr over warmup, then linear decay to 0
    warmup: float


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    predictions: np.ndarray


def lr_factor(step: int, total: int, schedule: str, warmup: float) -> float:
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * step / max(1, total)))
    if schedule == "triangle":
        peak = max(1, int(warmup * total))
        return step / peak if step < peak else max(0.0, (total - step) / max(1, total - peak))
    raise ValueError(f"unknown schedule '{schedule}'; choose triangle, cosine or constant.")


def train_classifier(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    desc: str = "train",
    eval_forward_batch: int | None = None,
) -> list[dict]:
    """SGD with Nesterov momentum; returns one record per epoch (train loss/accuracy, lr, evals;
    `eval_forward_batch` as `evaluate`'s `forward_batch`)."""
    model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, nesterov=config.momentum > 0,
    )
    steps_per_epoch = -(-len(labels) // config.batch_size)
    total = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, config.schedule, config.warmup)
    )
    loss_fn = nn.CrossEntropyLoss()
    images_t, labels_t = torch.from_numpy(images), torch.from_numpy(labels)
    history = []
    bar = tqdm(total=total, desc=desc, file=sys.stderr, mininterval=5.0, ascii=True)
    for epoch in range(1, config.epochs + 1):
        model.train()
        started, loss_sum, correct = time.perf_counter(), 0.0, 0
        for idx in batch_indices(len(labels_t), config.batch_size, generator):
            x, y = to_float_batch(images_t[idx], device), labels_t[idx].to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(1)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / len(labels_t),
            "train_accuracy": correct / len(labels_t),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        for name, (eval_images, eval_labels) in (eval_sets or {}).items():
            result = evaluate(model, eval_images, eval_labels, device, forward_batch=eval_forward_batch)
            record[f"{name}_loss"], record[f"{name}_accuracy"] = result.loss, result.accuracy
        bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        history.append(record)
    bar.close()
    return history


def _inputs(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Standardised float inputs on `device`: uint8 images are converted (`to_float_batch`); a
    floating tensor is taken as already converted (a set used many times is converted once)."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return images.to(device)
    return to_float_batch(images, device)


@torch.no_grad()
def evaluate(
    model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray, device: torch.device,
    batch_size: int = 1000, forward_batch: int | None = None,
) -> EvalResult:
    """Mean cross-entropy, accuracy and predicted classes, in eval mode.

    `images` are uint8 images, or the float tensor `to_float_batch` made of them. The loss is
    summed per `batch_size` images; within such a batch the forward passes take `forward_batch`
    images at a time (default: all of them). In eval mode an image's logits do not depend on the
    other images of its pass, so `forward_batch` changes no number (tested), only speed: passes
    of about 100 small images keep the activations in cache instead of streaming tens of MB
    through memory per layer.
    """
    model.eval()
    images_t, labels_t = torch.as_tensor(images), torch.from_numpy(labels)
    step = forward_batch or batch_size
    loss_sum, predictions = 0.0, []
    for start in range(0, len(labels_t), batch_size):
        stop = min(start + batch_size, len(labels_t))
        logits = torch.cat([model(_inputs(images_t[i:min(i + step, stop)], device)) for i in range(start, stop, step)])
        y = labels_t[start:stop].to(device)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
    predicted = torch.cat(predictions).numpy()
    return EvalResult(loss_sum / len(labels_t), float((predicted == labels).mean()), predicted)


@torch.no_grad()
def reset_batchnorm_stats(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device, batch_size: int = 500) -> None:
    """Recompute every BatchNorm's running mean/variance as the average over batches of `images`
    (torch's `update_bn`: statistics reset, cumulative moving average over the batches), then
    leave the model in eval mode. `images`: uint8 images or their `to_float_batch` tensor.

    Interpolated or permuted-then-averaged weights make the stored statistics meaningless
    (the averaged means and variances are not those of the averaged network's activations).
    """
    images_t = torch.as_tensor(images)
    batches = (_inputs(images_t[start:start + batch_size], device) for start in range(0, len(images_t), batch_size))
    torch.optim.swa_utils.update_bn(batches, model)
    model.eval()
