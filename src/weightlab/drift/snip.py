"""SNIP scores of every linear projection of every decoder layer, as Wei et al. (2024) compute them
(``prune_wandg`` in boyiwei/alignment-attribution-code): for each sample alone, the loss on the
response tokens only (prompt tokens labelled -100), its gradient, and the sum over samples of
|grad W|; the score of a weight is |W| * sum_samples |grad W|.

A **neuron** is one output row of one projection (a vector, so direction and its change are
defined); its score is the sum of its row's scores (`neuron_scores`). Only neuron scores leave
this module: the neuron-group rule needs nothing more, and they are 0.1% of the weight scores'
size.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from weightlab.errors import InputError
from weightlab.io import read_npz, write_npz
from weightlab.lm.precision import autocast, resolve_precision

PROJECTION = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:[\w.]+\.)?(\w+)$")  # ...layers.{L}.<block>.<name>
PEFT_PREFIX = "base_model.model."

Example = tuple[Sequence[int], Sequence[int]]  # (input ids, labels with -100 on prompt tokens)


def canonical_name(name: str) -> str:
    """A module's name in the unwrapped model ('model.layers.0.self_attn.q_proj'), also for a
    PEFT-wrapped model ('base_model.model.model.layers...') or a LoRA base layer ('...q_proj.base_layer')."""
    name = name.removeprefix(PEFT_PREFIX)
    return name.removesuffix(".base_layer")


def projection_modules(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every linear projection inside a decoder layer (``layers.{L}.``), by canonical name, in
    model order; LoRA's own A/B matrices are not projections of the model."""
    found: dict[str, torch.nn.Linear] = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name or not PROJECTION.search(name):
            continue
        found[canonical_name(name)] = module
    if not found:
        raise InputError("the model has no linear projections inside decoder layers ('layers.N.'); is it a decoder-only transformer?")
    return found


def module_neurons(model: torch.nn.Module) -> dict[str, int]:
    """Neurons (output rows) of every projection module, by canonical name: what group ids index."""
    return {name: module.out_features for name, module in projection_modules(model).items()}


def module_units(model: torch.nn.Module, unit: str = "row") -> dict[str, int]:
    """Units of every projection module: output rows (unit ``row``) or weights (``weight``, flat
    indices i·in_features + j): what group ids index."""
    if unit == "weight":
        return {name: module.weight.numel() for name, module in projection_modules(model).items()}
    return module_neurons(model)


def module_layer(name: str) -> int:
    match = PROJECTION.search(name)
    if match is None:
        raise InputError(f"'{name}' is not a projection inside a decoder layer.")
    return int(match.group(1))


def module_type(name: str) -> str:
    """'q_proj', 'down_proj', ...: the last part of the module's name."""
    return name.rsplit(".", 1)[-1]


def snip_weight_scores(model: torch.nn.Module, examples: Sequence[Example], device: str | torch.device | None = None,
                       modules: Sequence[str] | None = None, layers_per_pass: int = 0, desc: str = "snip",
                       precision: str = "fp32") -> dict[str, torch.Tensor]:
    """|W| * sum over samples of |d loss_i / d W| for each projection (float32 tensors shaped like
    W), where loss_i is the mean cross-entropy over the response tokens of sample i alone.

    `layers_per_pass` > 0 scores that many decoder layers per pass over the samples (Wei et al.
    score one layer at a time), so only their gradients and sums are held: the memory of a 7B
    model, at the cost of one pass per group of layers. `precision` (weightlab.lm.precision) may
    run the passes under bf16 autocast; the gradients and sums stay float32."""
    targets = projection_modules(model)
    if modules is not None:
        missing = sorted(set(modules) - set(targets))
        if missing:
            raise InputError(f"no projection named {missing[:3]} in the model; choose from e.g. {list(targets)[:3]}.")
        targets = {name: targets[name] for name in modules}
    if not examples:
        raise InputError("SNIP needs at least one sample.")
    device = device if device is not None else next(model.parameters()).device
    for _, labels in examples:
        if all(label == -100 for label in list(labels)[1:]):
            raise InputError("a SNIP sample has no response token to score (every label after the first is -100).")
    layers = sorted({module_layer(name) for name in targets})
    step = layers_per_pass if layers_per_pass > 0 else len(layers)
    passes = [set(layers[i:i + step]) for i in range(0, len(layers), step)]
    scores: dict[str, torch.Tensor] = {}
    was_training = model.training
    flags = {p: p.requires_grad for p in model.parameters()}
    model.eval()  # no dropout: the gradient of the model as it is
    try:
        for chunk in passes:
            chosen = {name: module for name, module in targets.items() if module_layer(name) in chunk}
            label = desc if len(passes) == 1 else f"{desc} (layers {min(chunk)}-{max(chunk)})"
            scores.update(_score_pass(model, chosen, examples, device, label, precision))
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return {name: scores[name] for name in targets}


def _score_pass(model: torch.nn.Module, targets: Mapping[str, torch.nn.Linear], examples: Sequence[Example],
                device: str | torch.device, desc: str, precision: str = "fp32") -> dict[str, torch.Tensor]:
    precision = resolve_precision(precision, torch.device(device).type)
    for p in model.parameters():
        p.requires_grad_(False)
    weights = {name: module.weight for name, module in targets.items()}
    for w in weights.values():
        w.requires_grad_(True)
    totals = {name: torch.zeros(w.shape, dtype=torch.float32, device=w.device) for name, w in weights.items()}
    for input_ids, labels in tqdm(examples, desc=desc, file=sys.stderr, mininterval=5):
        ids = torch.tensor([list(input_ids)], device=device)
        lab = torch.tensor([list(labels)], device=device)
        with autocast(precision, device):
            loss = model(input_ids=ids, labels=lab).loss
        grads = torch.autograd.grad(loss, list(weights.values()))
        for name, grad in zip(weights, grads):
            totals[name] += grad.detach().abs().float()
        del grads, loss
    return {name: weights[name].detach().abs().float() * totals[name] for name in weights}


def neuron_scores(weight_scores: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The score of each neuron (output row): the sum of its row's weight scores (float64)."""
    return {name: score.double().sum(dim=1).cpu().numpy() for name, score in weight_scores.items()}


def unit_scores(weight_scores: Mapping[str, torch.Tensor], unit: str) -> dict[str, np.ndarray]:
    """The scores the groups are taken from: per output row (its weights' scores summed, unit
    ``row``, float64) or per weight (the module's weight scores flattened row-major, unit
    ``weight``: index i·in_features + j, the index of Wei et al.'s topk over W_metric.flatten();
    float32, as SNIP computes them: 106M of them in float64 would take 850 MB)."""
    if unit == "row":
        return neuron_scores(weight_scores)
    if unit == "weight":
        return {name: score.detach().float().reshape(-1).cpu().numpy() for name, score in weight_scores.items()}
    raise InputError(f"drift.unit: unknown unit {unit!r}; choose from ('row', 'weight').")


def snip_neuron_scores(model: torch.nn.Module, examples: Sequence[Example], device: str | torch.device | None = None,
                       layers_per_pass: int = 0, desc: str = "snip", precision: str = "fp32", unit: str = "row") -> dict[str, np.ndarray]:
    """Neuron scores of every projection (`unit_scores`: rows by default, or single weights), from
    `snip_weight_scores` a pass at a time."""
    targets = projection_modules(model)
    layers = sorted({module_layer(name) for name in targets})
    step = layers_per_pass if layers_per_pass > 0 else len(layers)
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(layers), step):
        chunk = [name for name in targets if module_layer(name) in layers[i:i + step]]
        out.update(unit_scores(snip_weight_scores(model, examples, device, modules=chunk, desc=desc, precision=precision), unit))
    return {name: out[name] for name in targets}


def write_scores(path: Any, scores: Mapping[str, np.ndarray]) -> None:
    write_npz(path, **{name: np.asarray(values) for name, values in scores.items()})


def read_scores(path: Any) -> dict[str, np.ndarray]:
    return read_npz(path)


def check_same_modules(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    """Raise unless two score tables cover the same modules with the same numbers of neurons."""
    if set(a) != set(b) or any(len(a[k]) != len(b[k]) for k in a):
        raise InputError("the safety and utility SNIP scores cover different modules; re-run both SNIP rules on the same model.")
