"""Continued training of the pretrained LM with one method, and the measurement along the way.

`measure` is the study's measurement of a model: validation loss and perplexity (the shared LM
evaluation, `weightlab.lm.backbone.token_loss`), the FFN weights' Gram conditioning and the FFN
input activations' covariance conditioning. `retrofit` trains with AdamW (plus the Gram
regulariser and the transport step, by method) and measures every ``eval_interval`` steps.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from weightlab.batches import batch_indices
from weightlab.errors import InputError
from weightlab.lm.backbone import EVAL_BATCH, token_loss
from weightlab.lm.throughput import linear_weights, step_flops
from weightlab.retrofit.design import METHODS, METRICS
from weightlab.retrofit.gram import (
    ActivationCovariance,
    ffn_modules,
    ffn_weights,
    gram_penalty_grad,
    total_gram_penalty,
    transport_,
    weight_conditioning,
)
from weightlab.stats import mean_of, median_of

# --- measurement --------------------------------------------------------------------------------


@torch.no_grad()
def measure(
    model: torch.nn.Module, blocks: torch.Tensor, device: torch.device, detail: bool = False, batch_size: int = EVAL_BATCH,
) -> dict[str, Any]:
    """Validation loss and perplexity (token-weighted), weight Gram conditioning and activation
    covariance conditioning; with `detail`, the per-matrix and per-layer values too."""
    covariance = ActivationCovariance(ffn_modules(model))
    try:
        loss, tokens = token_loss(model, blocks, device, batch_size)
    finally:
        covariance.remove()
    by_matrix = weight_conditioning(model)
    by_layer = covariance.condition_numbers()
    result = {
        "loss": loss,
        "perplexity": math.exp(loss),
        "conditioning": mean_of(by_matrix.values(), empty=None),
        "conditioning_median": median_of(by_matrix.values(), empty=None),
        "activation_conditioning": mean_of(by_layer.values(), empty=None),
        "activation_conditioning_median": median_of(by_layer.values(), empty=None),
        "gram_penalty": total_gram_penalty(model),
        "tokens": tokens,
    }
    result.update(cond=result["conditioning"], ppl=result["perplexity"])  # the original study's key names
    if detail:
        result["conditioning_by_matrix"] = by_matrix
        result["activation_conditioning_by_layer"] = by_layer
    return result


# --- continued training -------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrofitConfig:
    """One method's continued training: the `retrofit.train` block of the config (its defaults
    live in config.yaml and the schema; design.method_settings sets what a method does not use
    to 0) and the method. Build it with weightlab.config.settings_dataclass."""

    method: str
    max_docs: int | None  # training documents of the corpus (retrofit.data.retrofit_data)
    num_steps: int
    lr: float
    batch_size: int
    eval_interval: int
    gram_weight: float
    glt_interval: int
    weight_decay: float
    trainable: str

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown retrofit method '{self.method}'; choose from {METHODS}.")
        if self.trainable not in ("all", "mlp"):
            raise InputError(f"trainable must be 'all' or 'mlp', got '{self.trainable}'.")

    @property
    def uses_gram(self) -> bool:
        return self.method in ("gram", "geometry") and self.gram_weight > 0

    @property
    def uses_transport(self) -> bool:
        return self.method == "geometry" and self.glt_interval > 0


def _trainable_parameters(model: torch.nn.Module, trainable: str) -> list[torch.nn.Parameter]:
    ffn = {id(p) for p in ffn_weights(model).values()}
    for p in model.parameters():
        p.requires_grad_(trainable == "all" or id(p) in ffn)
    return [p for p in model.parameters() if p.requires_grad]


def _record(trajectory: dict[str, list], step: int, point: Mapping[str, Any], train_loss: float | None, seconds: float) -> None:
    trajectory["steps"].append(step)
    for key in (*METRICS, "gram_penalty"):
        trajectory[key].append(point[key])
    trajectory["train_loss"].append(train_loss)
    trajectory["seconds"].append(seconds)


def retrofit(
    model: torch.nn.Module, train_blocks: torch.Tensor, val_blocks: torch.Tensor, cfg: RetrofitConfig,
    device: torch.device, generator: torch.Generator, initial: Mapping[str, Any] | None = None, desc: str = "retrofit",
) -> dict[str, Any]:
    """Continue training `model` with `cfg.method`; measure every `eval_interval` steps and at the
    end. `initial` (the unmodified model's measurement) saves re-measuring step 0."""
    model.to(device).train()
    params = _trainable_parameters(model, cfg.trainable)
    ffn = list(ffn_weights(model).values())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    trajectory: dict[str, list] = {k: [] for k in ("steps", *METRICS, "gram_penalty", "train_loss", "seconds")}
    initial = dict(initial) if initial is not None else measure(model, val_blocks, device, detail=True)
    _record(trajectory, 0, initial, None, 0.0)
    train_seconds, eval_seconds, transports, losses = 0.0, 0.0, 0, []
    final = initial
    progress = tqdm(batch_indices(len(train_blocks), cfg.batch_size, generator, num_steps=cfg.num_steps),
                    total=cfg.num_steps, desc=desc, file=sys.stderr, mininterval=5)
    for step, index in enumerate(progress, start=1):
        start = time.perf_counter()
        batch = train_blocks[index].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        if cfg.uses_gram:
            with torch.no_grad():
                for weight in ffn:
                    weight.grad.add_(gram_penalty_grad(weight), alpha=cfg.gram_weight)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cfg.uses_transport and step % cfg.glt_interval == 0:
            for weight in ffn:
                transport_(weight)
            transports += 1
        train_seconds += time.perf_counter() - start
        losses.append(float(loss.detach()))
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % cfg.eval_interval == 0 or step == cfg.num_steps:
            start = time.perf_counter()
            final = measure(model, val_blocks, device, detail=step == cfg.num_steps)
            eval_seconds += time.perf_counter() - start
            _record(trajectory, step, final, float(np.mean(losses)), train_seconds)
            losses = []
    return {
        "method": cfg.method,
        "initial": initial,
        "final": final,
        "trajectory": trajectory,
        "transports": transports,
        "timing": {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "seconds_per_100_steps": 100 * train_seconds / max(cfg.num_steps, 1),
            "train_flops": train_flops(model, cfg, tuple(train_blocks.shape[1:])),
        },
    }


def train_flops(model: torch.nn.Module, cfg: RetrofitConfig, block_shape: tuple[int, ...]) -> float:
    """The floating-point operations of the training steps (weightlab.lm.throughput): forward
    and activations' gradients through every linear layer, weights' gradients for the trained
    ones (all, or the FFN weights under trainable: mlp); the Gram term and transports are left
    out (a d x d product per FFN weight per step, small beside the batch's)."""
    (seq_len,) = block_shape
    tokens = cfg.num_steps * cfg.batch_size * seq_len
    config = getattr(model, "config", None)
    shape = {"n_layers": getattr(config, "num_hidden_layers", 0), "d_model": getattr(config, "hidden_size", 0), "seq_len": seq_len}
    weights = linear_weights(model)
    if cfg.trainable == "all":
        return step_flops(weights, tokens, "full", **shape)
    ffn = sum(w.numel() for w in ffn_weights(model).values())
    return step_flops(weights, tokens, "adapter", **shape) + 2.0 * ffn * tokens
