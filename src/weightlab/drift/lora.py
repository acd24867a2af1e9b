"""LoRA with PEFT: the safety-alignment fine-tuning of the default model, and the fine-tuning whose
neuron drift the study measures.

One training loop (`train_lora`): AdamW on the adapter parameters, loss on the response tokens
only (prompt and padding labelled -100), seeded batches of whole epochs (`max_steps` > 0 caps
the steps as in Hugging Face's Trainer), and a callback every `interval` steps. `align_safety`
trains and merges (the merged model is what SNIP scores and what the later fine-tuning starts
from); `finetune_with_drift` trains while logging drift per group and the refusal rate.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from weightlab.batches import batch_indices
from weightlab.config import settings_dataclass, settings_fields
from weightlab.drift.data import encode_pairs
from weightlab.drift.design import SAFETY_GROUPS
from weightlab.drift.drift import DriftTracker
from weightlab.drift.groups import Group, matched_control
from weightlab.drift.refusal import pad_token_id, refusal_rate
from weightlab.drift.weights import WeightDriftTracker
from weightlab.errors import InputError
from weightlab.io import write_folder_atomically, write_json
from weightlab.lm.precision import PRECISIONS, autocast, resolve_precision

OPTIMIZERS = ("adam", "sgd")


# config keys of the drift block -> LoraSettings fields (the keys mirror the original's scripts)
LORA_FIELDS = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules"}


@dataclass(frozen=True)
class LoraSettings:
    """The adapter: rank, scale α (the update is (α/r)·B·A), dropout and the projections it is put on.
    No defaults: they live in config.yaml and the schema; build it with `from_settings`."""

    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "LoraSettings":
        """From the drift block's lora_r, lora_alpha, lora_dropout and target_modules (its other keys
        are other stages'); a missing one is one error naming it."""
        missing = sorted(k for k in LORA_FIELDS if k not in settings)
        if missing:
            raise InputError(f"{key}: missing keys {missing}; see schemas/config.schema.yaml.")
        block = {field_name: settings[k] for k, field_name in LORA_FIELDS.items()}
        return settings_dataclass(cls, block, key, r=int, alpha=float, dropout=float, target_modules=tuple)


@dataclass(frozen=True)
class TrainSettings:
    """One LoRA training run. No defaults: they live in config.yaml and the schema; build it with
    `from_settings`. `max_steps` > 0: exactly this many steps, whatever num_epochs says; `optimizer`
    "adam" (AdamW) or "sgd" (plain SGD: no per-parameter normalisation); `precision`
    (weightlab.lm.precision) "bf16" runs forward and backward under bf16 autocast (adapters stay float32)."""

    learning_rate: float
    batch_size: int
    num_epochs: float
    max_steps: int
    weight_decay: float
    max_grad_norm: float
    max_length: int
    optimizer: str
    precision: str

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer '{self.optimizer}'; choose from {OPTIMIZERS}.")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}'; choose from {PRECISIONS}.")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "TrainSettings":
        """From the fields' keys in a block (the drift block for the fine-tuning; the alignment's
        block with the drift block's max_length and precision); its other keys are other stages'.
        A missing key is one error naming it."""
        return settings_fields(cls, settings, key, learning_rate=float, batch_size=int, num_epochs=float, max_steps=int,
                               weight_decay=float, max_grad_norm=float, max_length=int, optimizer=str, precision=str)

    def steps(self, n_examples: int) -> int:
        if self.max_steps > 0:
            return self.max_steps
        if n_examples < 1 or self.num_epochs <= 0:
            raise InputError(f"no training steps: {n_examples} examples and num_epochs {self.num_epochs}.")
        return max(1, math.ceil(self.num_epochs * n_examples / self.batch_size))


def wrap_lora(model: torch.nn.Module, lora: LoraSettings, seed: int = 0) -> Any:
    """The model with a fresh LoRA adapter (B = 0, A seeded) on `lora.target_modules`; only the
    adapter trains."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, config)
        except ValueError as err:
            raise InputError(f"cannot put LoRA on target_modules {list(lora.target_modules)}: {err}") from err


def collate(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (-100 on padding) of a batch."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def response_loss(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over every response token of the batch (token-weighted)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def make_optimizer(params: Sequence[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW, or plain SGD (no momentum): the sensitivity option, since Adam's per-parameter
    normalisation moves every adapter entry by about the learning rate whatever its gradient."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


@torch.no_grad()
def example_losses(model: Any, examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, batch_size: int = 16) -> np.ndarray:
    """Each example's mean cross-entropy over its response tokens (the held-out utility loss, per
    example, so a change can be paired example by example). The model's training mode is restored."""
    if not examples:
        raise InputError("example_losses needs at least one example.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size], pad_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
            targets = batch["labels"][:, 1:]
            token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
            counted = (targets != -100).sum(dim=1).clamp_min(1)
            out.append((token.sum(dim=1) / counted).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


Callback = Callable[[int, float | None], None]  # (step, mean training loss since the last call)


def train_lora(model: Any, examples: Sequence[tuple[Sequence[int], Sequence[int]]], settings: TrainSettings, pad_id: int,
               generator: torch.Generator, callback: Callback | None = None, interval: int = 0, desc: str = "lora") -> list[dict[str, Any]]:
    """Train the trainable (adapter) parameters; `callback(step, loss)` runs at step 0, every
    `interval` steps and after the last. Returns one record per step (loss, seconds, the batch's
    tokens with padding)."""
    if not examples:
        raise InputError("LoRA training needs at least one example.")
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("nothing to train: the model has no trainable parameter (wrap it with wrap_lora).")
    optimizer = make_optimizer(params, settings)
    steps = settings.steps(len(examples))
    batch_size = min(settings.batch_size, len(examples))
    history: list[dict[str, Any]] = []
    since: list[float] = []
    precision = resolve_precision(settings.precision, device.type)
    if callback is not None:
        callback(0, None)
    model.train()
    progress = tqdm(batch_indices(len(examples), batch_size, generator, num_steps=steps), total=steps, desc=desc, file=sys.stderr, mininterval=5)
    for step, index in enumerate(progress, start=1):
        start = time.perf_counter()
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in index], pad_id).items()}
        with autocast(precision, device):
            loss = response_loss(model, batch)
        loss.backward()
        loss = loss.detach()
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        history.append({"step": step, "loss": value, "seconds": time.perf_counter() - start, "tokens": int(batch["input_ids"].numel())})
        since.append(value)
        if callback is not None and ((interval > 0 and step % interval == 0) or step == steps):
            callback(step, float(np.mean(since)))
            since = []
    model.eval()
    return history


# --- safety alignment ---------------------------------------------------------------------------


def align_safety(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[Mapping[str, str]], lora: LoraSettings,
                 settings: TrainSettings, seed: int = 0, callback: Callback | None = None, interval: int = 0) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """LoRA fine-tuning on harmful prompts paired with refusals mixed with utility pairs, then the
    adapter merged into the weights. Returns the merged model and the training records."""
    examples = encode_pairs(tokenizer, pairs, settings.max_length)
    peft_model = wrap_lora(model, lora, seed)
    generator = torch.Generator().manual_seed(seed)
    history = train_lora(peft_model, examples, settings, pad_token_id(tokenizer), generator, callback, interval, desc="safety alignment")
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, history


def save_model_folder(model: torch.nn.Module, tokenizer: Any, folder: str | Path, name: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write a model folder `weightlab.lm.backbone.load_backbone` reads (weights, tokenizer and
    manifest), atomically. Returns the manifest."""
    from weightlab.lm.backbone import MANIFEST, describe

    manifest = {"name": name, **describe(model), "source": "weightlab.drift", "load_from": ".", **dict(extra or {})}

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / MANIFEST, manifest)

    write_folder_atomically(folder, fill)
    return manifest


# --- fine-tuning with drift tracking ------------------------------------------------------------


def tracked_groups(groups: Mapping[str, Group]) -> dict[str, Group]:
    """The study's groups plus, for each safety group, its module-matched random control
    (``random_matched:<group>``, the prefix of random_matched with that group's counts)."""
    tracked = dict(groups)
    if "random_matched" in groups:
        for name in SAFETY_GROUPS:
            if name in groups:
                tracked[f"random_matched:{name}"] = matched_control(groups["random_matched"], groups[name])
    return tracked


@dataclass
class RefusalProbe:
    """Held-out prompt sets whose refusal rate is measured (before and after alignment, along the
    fine-tuning): {set name: prompts}, with each prompt's source for a per-source rate."""

    prompts: Mapping[str, Sequence[str]]  # e.g. {"harmful": [...], "benign": [...]}
    max_new_tokens: int = 16
    batch_size: int = 20
    keep_answers: int = 0
    sources: Mapping[str, Sequence[str]] = field(default_factory=dict)
    precision: str = "fp32"  # weightlab.lm.precision

    @classmethod
    def from_data(cls, data: Mapping[str, Any], max_new_tokens: int = 16, batch_size: int = 20, keep_answers: int = 0,
                  precision: str = "fp32") -> "RefusalProbe":
        """Held-out harmful (HarmBench and unseen AdvBench) and benign prompts of `prepare_data`."""
        sets = {"harmful": data["eval_harmful"], "benign": data["eval_benign"]}
        return cls({k: [p["prompt"] for p in v] for k, v in sets.items()}, max_new_tokens, batch_size, keep_answers,
                   {k: [p["source"] for p in v] for k, v in sets.items()}, precision)

    def __call__(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {name: refusal_rate(model, tokenizer, list(p), self.max_new_tokens, self.batch_size, self.keep_answers, self.sources.get(name),
                                   precision=self.precision)
                for name, p in self.prompts.items() if p}

    def matches(self, result: Mapping[str, Any], device: str = "cpu") -> bool:
        """Whether `result` (a probe's output, e.g. alignment.json's ``after``) measured these
        prompt sets (their sizes) with this judge length and precision, so it can stand for a
        probe of the same model instead of generating again."""
        precision = resolve_precision(self.precision, device)
        wanted = {name: len(p) for name, p in self.prompts.items() if p}
        return set(result) == set(wanted) and all(
            result[name].get("n") == n and result[name].get("max_new_tokens") == self.max_new_tokens
            and result[name].get("precision", "fp32") == precision for name, n in wanted.items())


@dataclass
class FinetuneResult:
    records: list[dict[str, Any]]
    final: dict[str, dict[str, np.ndarray]]  # group -> measure -> per-neuron values at the last step
    modules: dict[str, list[str]]  # group -> module of each neuron, aligned with `final`
    trained_modules: list[str]
    excluded: dict[str, int]  # neurons of each group outside the trained modules
    history: list[dict[str, Any]] = field(default_factory=list)
    heldout: dict[int, np.ndarray] = field(default_factory=dict)  # step -> per-example held-out loss
    population: dict[str, Any] = field(default_factory=dict)  # `DriftTracker.population` at the last step


def finetune_with_drift(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[Mapping[str, str]], groups: Mapping[str, Group],
                        lora: LoraSettings, settings: TrainSettings, drift_interval: int, probe: RefusalProbe | None = None,
                        refusal_interval: int = 0, seed: int = 0, on_record: Callable[[dict[str, Any]], None] | None = None,
                        heldout: Sequence[Mapping[str, str]] = (), start_refusal: Mapping[str, Any] | None = None,
                        unit: str = "row", weight_sample: int = 0) -> FinetuneResult:
    """LoRA fine-tuning on `pairs` that measures, at step 0, every `drift_interval` steps and at
    the end, the drift of every group (and matched control) and, every `refusal_interval` steps
    (0: at the start and the end only), the refusal rates of `probe` and the mean loss on the
    `heldout` utility pairs (per example kept in `FinetuneResult.heldout`). Each record goes to
    `on_record` as it is made (a line of drift_log.jsonl). At the end, the drift of every neuron
    of the trained modules (`FinetuneResult.population`). `start_refusal`, the probe's result on
    the start model measured before (the alignment rule's "after": the same model), stands for the
    probe at step 0, which then generates nothing. `unit` ``weight``: the groups hold single
    weights (flat indices) and the population is every group weight plus `weight_sample` others per
    module (`weights.WeightDriftTracker`)."""
    examples = encode_pairs(tokenizer, pairs, settings.max_length)
    heldout_examples = encode_pairs(tokenizer, heldout, settings.max_length)
    pad_id = pad_token_id(tokenizer)
    heldout_losses: dict[int, np.ndarray] = {}
    peft_model = wrap_lora(model, lora, seed)
    tracked = tracked_groups(groups)
    tracker = WeightDriftTracker(peft_model, tracked, weight_sample, seed) if unit == "weight" else DriftTracker(peft_model, tracked)
    steps = settings.steps(len(examples))
    records: list[dict[str, Any]] = []
    last: dict[str, dict[str, np.ndarray]] = {}
    clock = time.perf_counter()

    def log(step: int, loss: float | None) -> None:
        nonlocal last
        start = time.perf_counter()
        last = tracker.measure()
        record: dict[str, Any] = {"step": step, "train_loss": loss, "groups": tracker.summarise(last)}
        drift_seconds = time.perf_counter() - start
        evaluate = step in (0, steps) or (refusal_interval > 0 and step % refusal_interval == 0)
        if heldout_examples and evaluate:
            heldout_losses[step] = example_losses(peft_model, heldout_examples, pad_id, settings.batch_size * 4)
            record["heldout_loss"] = float(heldout_losses[step].mean())
        if probe is not None and evaluate:
            measured = start_refusal if step == 0 and start_refusal is not None else probe(peft_model, tokenizer)
            record["refusal"] = {name: {k: v for k, v in r.items() if k != "examples"} for name, r in measured.items()}
            if step == 0 and start_refusal is not None:
                record["refusal_reused"] = True
        record.update(drift_seconds=drift_seconds, elapsed_seconds=time.perf_counter() - clock)
        records.append(record)
        if on_record is not None:
            on_record(record)

    generator = torch.Generator().manual_seed(seed)
    history = train_lora(peft_model, examples, settings, pad_id, generator, log, drift_interval, desc="fine-tuning")
    return FinetuneResult(records, last, {g: tracker.module_labels(g) for g in tracker.groups}, tracker.trained_modules,
                          tracker.excluded, history, heldout_losses, tracker.population())


def settings_record(lora: LoraSettings, settings: TrainSettings) -> dict[str, Any]:
    return {"lora": {**asdict(lora), "target_modules": list(lora.target_modules)}, "train": asdict(settings)}
