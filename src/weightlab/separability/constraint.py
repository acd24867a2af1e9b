"""Experiment A: per-head constraint and clamps on a small transformer (two layers by default).

The task (`weightlab.separability.task`) is the original's interleaved-pattern task; Ψ is the
accuracy at the last position. A one-layer model cannot solve it (its best fixed-offset copy
reaches about 0.67 at sequence length 32, `task.fixed_offset_ceiling`, reported in every summary);
two layers allow a previous-token head and an induction head, so the control can reach the
original's criterion A1 (≥ 0.95). Adam, no weight decay.

Conditions (`CONDITIONS`):

- ``control``: every head trains.
- ``constraint``: heads ``frozen_heads`` (1, 2, 3: three of four, as in the original) of every layer
  in ``frozen_layers`` keep their initial weights (`weightlab.separability.freeze.HeadFreeze`). This
  freezes weights, not routing: LayerNorms, embeddings, b_O and the free heads train, so the
  frozen heads' attention still moves; their G is logged (``G_frozen``).
- ``naive_clamp``: constraint + the naive clamp at ``clamp_hook`` (`weightlab.separability.clamps`):
  the tensor is rescaled so its mean token norm is the trained control's there, fixing amplitude
  and variance together.
- ``mean_preserving_clamp``: constraint + the mean-preserving clamp: centred on its mean vector over
  the batch's tokens, the centred part rescaled to the control's std, the mean added back.

The default site is the original's, after the final LayerNorm (``ln_final.hook_out``); an attention
output ``blocks.<i>.hook_attn_out`` is the other one offered. The targets come from `calibrate_clamps`
at ``calibration_hook`` (default: the clamp's site) on the trained control of the same seed (its
audit log's ``summary.calibration``). Both clamps act on batch statistics, as the original's do, so
evaluation uses batches of the training batch size. Each training step's scale factor is kept
(``summary.clamp_factors``) and summarised (``summary.clamp_effect``, whose ``acts`` is the
precondition "the clamp changes what it clamps").
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.clamps import (  # noqa: F401 - re-exported: the experiment's public names
    CLAMP_KINDS,
    Clamp,
    calibrate_clamps,
    calibration_from_control,
    centred_std,
    clamp_for,
    factor_summary,
    mean_preserving_clamp,
    mean_token_norm,
    naive_clamp,
)
from weightlab.separability.design import CONDITIONS as DESIGN_CONDITIONS
from weightlab.separability.freeze import HEAD_PARAMS, HeadFreeze  # noqa: F401
from weightlab.separability.observables import (
    LogSchedule,
    PatternHistory,
    a_activation,
    a_learned,
    a_param,
    head_plasticity,
    layer_observables,
    sigma_sq,
    sigma_sq_token_spread,
)
from weightlab.separability.task import (  # noqa: F401
    PATTERN_LENGTHS,
    InterleavedData,
    fixed_offset_ceiling,
    interleaved_sequences,
    last_position_accuracy,
    oracle_accuracy,
    oracle_predictions,
    predictable_targets,
)
from weightlab.separability.toy import ToyConfig, ToyTransformer

CONDITIONS = DESIGN_CONDITIONS["a"]  # control, constraint, naive_clamp, mean_preserving_clamp
CONSTRAINED = tuple(c for c in CONDITIONS if c != "control")
PACKAGES = ("transformer-lens",)
LR_SCHEDULES = ("constant", "cosine")  # constant: the original's; cosine: lr · (1 + cos(π t / T)) / 2
_HELDOUT_SEED_OFFSET = 1_000_003  # the held-out set's generator: a stream disjoint from the training data's

Hook = tuple[str, Callable[..., torch.Tensor]]


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintConfig:
    """Experiment A's settings (the ``separability.exp_a`` config block; its defaults live in
    config.yaml and the schema, every key described there)."""

    vocab_size: int
    seq_len: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_layers: int
    n_train: int
    n_heldout: int
    batch_size: int
    lr: float
    lr_schedule: str
    warmup_steps: int
    epochs: int
    frozen_heads: tuple[int, ...]
    frozen_layers: tuple[int, ...]
    clamp_hook: str
    calibration_hook: str | None  # None: the clamp's own site
    clamp_min_effect: float
    calibration_batches: int
    probe_size: int
    g_window: int
    checkpoint_every: int
    log_dense_every: int
    log_sparse_every: int
    log_dense_until: int
    log_fast_change: float

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ConstraintConfig:
        as_ints = lambda values: tuple(int(v) for v in values)  # noqa: E731
        cfg = settings_dataclass(cls, settings, "separability.exp_a", frozen_heads=as_ints, frozen_layers=as_ints)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise InputError for settings the experiment cannot run with."""
        if self.seq_len < 2 * PATTERN_LENGTHS[1]:
            raise InputError(f"separability.exp_a.seq_len={self.seq_len} is too short: the last target is a repeat only from "
                             f"{2 * PATTERN_LENGTHS[1]} tokens on (each stream must show its longest pattern once); raise it.")
        if self.n_train < self.batch_size or self.n_heldout < self.batch_size:
            raise InputError(f"separability.exp_a: n_train ({self.n_train}) and n_heldout ({self.n_heldout}) must be at least "
                             f"batch_size ({self.batch_size}).")
        bad = [h for h in self.frozen_heads if not 0 <= h < self.n_heads]
        if bad or len(set(self.frozen_heads)) >= self.n_heads:
            raise InputError(f"separability.exp_a.frozen_heads={list(self.frozen_heads)} must name distinct heads in "
                             f"0..{self.n_heads - 1} and leave at least one free.")
        if self.warmup_steps < 0:
            raise InputError(f"separability.exp_a.warmup_steps={self.warmup_steps} must be >= 0.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"separability.exp_a.lr_schedule={self.lr_schedule!r} must be one of {', '.join(LR_SCHEDULES)}.")
        if self.n_layers < 1 or not self.frozen_layers or any(not 0 <= layer < self.n_layers for layer in self.frozen_layers):
            raise InputError(f"separability.exp_a.frozen_layers={list(self.frozen_layers)} must name layers in "
                             f"0..{self.n_layers - 1} (n_layers={self.n_layers}).")

    @property
    def calibration_site(self) -> str:
        return self.calibration_hook or self.clamp_hook

    def model_config(self) -> ToyConfig:
        return ToyConfig(d_vocab=self.vocab_size, n_ctx=self.seq_len, d_model=self.d_model, n_heads=self.n_heads,
                         d_head=self.d_head, d_mlp=self.d_mlp, n_layers=self.n_layers, normalization="LN")

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size  # the last partial batch is dropped (the clamps use batch statistics)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def lr_factor(step: int, total: int, schedule: str, warmup: int = 0) -> float:
    """The learning rate of update `step` (0-based) as a fraction of ``lr``: a linear warm-up
    (step + 1) / warmup over the first `warmup` updates, times the schedule (constant: 1; cosine:
    (1 + cos(π step / total)) / 2, from 1 down towards 0 at `total`)."""
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return ramp * (0.5 * (1 + math.cos(math.pi * step / total)) if schedule == "cosine" else 1.0)


# --- measurement --------------------------------------------------------------------------------


def forward(model: ToyTransformer, tokens: torch.Tensor, hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Logits with the given forward hooks (the clamp) in place for this call only."""
    return model.run_with_hooks(tokens, fwd_hooks=list(hooks)) if hooks else model(tokens)


@torch.no_grad()
def evaluate(model: ToyTransformer, data: InterleavedData, hooks: Sequence[Hook], batch_size: int) -> dict[str, float]:
    """Held-out Ψ (last position), loss over all positions, and accuracy over every predictable
    target, in batches of `batch_size` (the clamps use batch statistics)."""
    right_last = right_pred = n_pred = 0
    loss_sum = 0.0
    usable = len(data) - len(data) % batch_size
    mask = predictable_targets(data.periods, data.inputs.shape[1])
    for start in range(0, usable, batch_size):
        inputs, targets = data.inputs[start:start + batch_size], data.targets[start:start + batch_size]
        logits = forward(model, inputs, hooks)
        loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"))
        hits = logits.argmax(-1) == targets
        right_last += int(hits[:, -1].sum())
        right_pred += int(hits[mask[start:start + batch_size]].sum())
        n_pred += int(mask[start:start + batch_size].sum())
    return {
        "psi_accuracy": right_last / usable,
        "heldout_loss": loss_sum / (usable * data.inputs.shape[1]),
        "accuracy_predictable": right_pred / max(n_pred, 1),
    }


@torch.no_grad()
def probe(model: ToyTransformer, tokens: torch.Tensor, clamp: Clamp | None, site: str) -> tuple[torch.Tensor, dict[str, float]]:
    """The attention patterns [batch, layer * head, query, key] and the observables on the probe
    batch: A_activation_L<i>, sigma_sq_L<i> and sigma_sq_token_L<i> of every layer's residual stream,
    and A_site / sigma_sq_site at the clamp `site` as the rest of the model sees it (after the clamp
    in the clamp conditions; measured without one otherwise), with ``*_preclamp`` (what arrived
    there) where a clamp acts."""
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str) -> Callable[..., None]:
        def hook(value: torch.Tensor, hook: Any = None) -> None:
            seen[key] = value.detach().clone()
        return hook

    n_layers = len(model.blocks)
    hooks: list[Hook] = [(f"blocks.{i}.attn.hook_pattern", keep(f"pattern{i}")) for i in range(n_layers)]
    hooks += [(f"blocks.{i}.hook_resid_post", keep(f"resid{i}")) for i in range(n_layers)]
    hooks.append((site, keep("pre")))
    if clamp is not None:
        hooks.append(clamp.fwd_hook())
    hooks.append((site, keep("post")))
    model.run_with_hooks(tokens, fwd_hooks=hooks)
    resids = [seen[f"resid{i}"] for i in range(n_layers)]
    values = layer_observables(resids)
    values.update({f"sigma_sq_token_L{i}": sigma_sq_token_spread(r) for i, r in enumerate(resids)})
    values.update({"A_site": a_activation(seen["post"]), "sigma_sq_site": sigma_sq(seen["post"])})
    if clamp is not None:
        values.update({"A_site_preclamp": a_activation(seen["pre"]), "sigma_sq_site_preclamp": sigma_sq(seen["pre"])})
    return torch.cat([seen[f"pattern{i}"] for i in range(n_layers)], dim=1), values


def amplitude_params(model: ToyTransformer, free_heads: Sequence[int]) -> dict[str, float | None]:
    """A_param (all value projections), A_param_free (the free heads' W_V only) and A_learned."""
    return {
        "A_param": a_param(model.value_weights()),
        "A_param_free": a_param([w[list(free_heads)] for w in model.value_weights()]),
        "A_learned": a_learned(model.ln_final_scale()),
    }


def head_names(n_layers: int, n_heads: int) -> list[str]:
    """'L0H0', 'L0H1', ...: the order of the heads in `probe`'s patterns."""
    return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]


# --- one condition ------------------------------------------------------------------------------


@dataclass
class ConstraintRun:
    """What `run_condition` hands back: the trained model and the complete audit log."""

    model: ToyTransformer
    document: dict[str, Any]
    clamp: Clamp | None
    freeze: dict[str, Any]


def build_model(cfg: ConstraintConfig, seed: int) -> ToyTransformer:
    """The toy transformer initialised from `seed` alone (same seed, same initial weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ToyTransformer(cfg.model_config())


def make_optimiser(cfg: ConstraintConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The original's optimiser: Adam at ``lr``, default betas, no weight decay (the benchmark that
    chooses the settings, benchmarks/separability_control_choice.py, uses this same function)."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def task_data(cfg: ConstraintConfig, seed: int) -> tuple[InterleavedData, InterleavedData]:
    """The training set and the held-out set of a seed (disjoint generator streams)."""
    train = interleaved_sequences(cfg.n_train, cfg.seq_len, cfg.vocab_size, torch.Generator().manual_seed(seed))
    heldout = interleaved_sequences(cfg.n_heldout, cfg.seq_len, cfg.vocab_size,
                                    torch.Generator().manual_seed(seed + _HELDOUT_SEED_OFFSET))
    return train, heldout


def run_condition(
    condition: str, cfg: ConstraintConfig, seed: int, settings: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None, device: torch.device | str = "cpu", desc: str | None = None,
) -> ConstraintRun:
    """Train one condition of experiment A and return its model and validated audit log.

    `calibration` (the trained control's ``summary.calibration``) is needed by the clamp conditions;
    the control computes its own at the end and stores it in its summary."""
    if condition not in CONDITIONS:
        raise InputError(f"experiment A has no condition {condition!r}; choose one of {list(CONDITIONS)}.")
    clamp = clamp_for(condition, calibration, cfg.clamp_hook)
    device = torch.device(device)
    train, heldout = task_data(cfg, seed)
    train_tokens, probe_tokens = train.tokens.to(device), heldout.inputs[: cfg.probe_size].to(device)
    heldout = InterleavedData(heldout.tokens.to(device), heldout.periods.to(device))
    model = build_model(cfg, seed).to(device)
    constrained = condition in CONSTRAINED
    freeze = HeadFreeze(model, cfg.frozen_heads if constrained else (), cfg.frozen_layers)
    names = head_names(cfg.n_layers, cfg.n_heads)
    frozen_names = [f"L{layer}H{head}" for layer, head in freeze.frozen_units()]
    reference_frozen = [f"L{layer}H{head}" for layer in cfg.frozen_layers for head in cfg.frozen_heads]
    hooks = [clamp.fwd_hook()] if clamp else []
    optimiser = make_optimiser(cfg, model)
    total = cfg.total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda t: lr_factor(t, total, cfg.lr_schedule, cfg.warmup_steps))
    schedule = LogSchedule(cfg.total_steps + 1, cfg.log_dense_every, cfg.log_sparse_every, cfg.log_dense_until,
                           cfg.log_fast_change, band=None)
    log = AuditLog("a", condition, seed, dict(settings) if settings is not None else dataclasses.asdict(cfg), PACKAGES)
    log.checkpoint(0, model.state_dict())
    order = torch.Generator().manual_seed(seed + 1)
    history = PatternHistory(cfg.g_window)
    last_train: dict[str, float] = {}
    factors: list[float] = []

    def record(step: int) -> dict[str, Any]:
        model.eval()
        pattern, residual = probe(model, probe_tokens, clamp, cfg.clamp_hook)
        reference = history.reference(step)
        per_head = dict(zip(names, head_plasticity(reference, pattern).tolist())) if reference is not None else {}
        history.add(step, pattern)

        def mean_g(heads: Sequence[str]) -> float | None:
            return sum(per_head[h] for h in heads) / len(heads) if per_head and heads else None

        metrics = {
            **evaluate(model, heldout, hooks, cfg.batch_size),
            "loss": last_train.get("loss"),
            "train_accuracy": last_train.get("accuracy"),
            "clamp_factor": factors[-1] if factors else None,
            "G": mean_g(names),
            "G_frozen": mean_g(reference_frozen),  # the heads the constraint freezes (measured in every condition)
            "G_free": mean_g([h for h in names if h not in reference_frozen]),
            **{f"G_{h}": per_head.get(h) for h in names},
            **amplitude_params(model, freeze.free),
            **residual,
        }
        model.train()
        schedule.observe(metrics["psi_accuracy"])
        return log.record(step, **metrics)

    bar = tqdm(total=cfg.total_steps, desc=desc or f"exp_a {condition}", file=sys.stderr, mininterval=5.0, ascii=True)
    step = 0
    model.train()
    for _ in range(cfg.epochs):
        batches = torch.randperm(cfg.n_train, generator=order)[: cfg.steps_per_epoch * cfg.batch_size]
        for rows in batches.view(cfg.steps_per_epoch, cfg.batch_size):
            if schedule.due(step):
                record(step)
            if cfg.checkpoint_every and step and step % cfg.checkpoint_every == 0:
                log.checkpoint(step, model.state_dict())
            tokens = train_tokens[rows.to(device)]
            logits = forward(model, tokens[:, :-1], hooks)
            if clamp is not None:
                factors.append(clamp.last_factor)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            freeze.restore()
            last_train = {"loss": float(loss.detach()), "accuracy": last_position_accuracy(logits.detach(), tokens[:, 1:])}
            step += 1
            bar.update(1)
    bar.close()
    final = record(step)
    freeze.remove()
    model.eval()
    log.checkpoint(step, model.state_dict())
    freeze_report = freeze.report()
    g_frozen = [m["G_frozen"] for m in log.metrics if m.get("G_frozen") is not None]
    last = cfg.n_layers - 1
    summary: dict[str, Any] = {
        "final_psi_accuracy": final["psi_accuracy"],
        "final_heldout_loss": final["heldout_loss"],
        "final_accuracy_predictable": final["accuracy_predictable"],
        "fixed_offset_ceiling": fixed_offset_ceiling(heldout),  # the best a fixed-offset copy (a 1-layer model) does
        "n_layers": cfg.n_layers,
        "final_A_activation": final[f"A_activation_L{last}"],  # the last layer's residual stream (the original's resid_post)
        **{f"final_{k}": final.get(k) for k in ("A_activation_L0", "sigma_sq_L0", f"sigma_sq_L{last}", "A_param", "A_param_free",
                                                 "A_learned", "A_site", "sigma_sq_site", "A_site_preclamp", "sigma_sq_site_preclamp")
           if k in final},
        "frozen_heads": freeze.frozen,
        "frozen_layers": freeze.layers,
        "frozen_units": frozen_names,
        "free_heads": freeze.free,
        **freeze_report,
        "G_frozen_final": final["G_frozen"],
        "G_frozen_min": min(g_frozen) if g_frozen else None,
        "G_definition": f"per head 1 - Jensen-Shannon distance (bits) between its attention pattern on the probe batch now and "
                        f">= {cfg.g_window} steps earlier (else the first log); G_frozen averages the heads "
                        f"{reference_frozen}, frozen in the constrained conditions",
        "clamp": clamp.describe() if clamp else None,
        "clamp_factors": factors if clamp else None,
        "clamp_effect": factor_summary(factors, cfg.clamp_min_effect) if clamp else None,
        "steps_per_epoch": cfg.steps_per_epoch,
        "epochs": cfg.epochs,
        "heldout_sequences": len(heldout) - len(heldout) % cfg.batch_size,
    }
    if condition == "control":
        summary["calibration"] = {
            **calibrate_clamps(model, heldout.inputs, cfg.calibration_site, cfg.batch_size, cfg.calibration_batches),
            "clamp_hook": cfg.clamp_hook,
        }
    document = log.document(step, **summary)
    return ConstraintRun(model, document, clamp, freeze_report)


def metric_keys(condition: str, n_layers: int = 1, n_heads: int = 4) -> Iterable[str]:
    """The metric keys logged at every step for a condition (for readers and tests)."""
    keys = ["psi_accuracy", "heldout_loss", "accuracy_predictable", "loss", "train_accuracy", "clamp_factor", "G", "G_frozen",
            "G_free", *(f"G_{h}" for h in head_names(n_layers, n_heads)), "A_param", "A_param_free", "A_learned",
            *(f"{k}_L{i}" for i in range(n_layers) for k in ("A_activation", "sigma_sq", "sigma_sq_token")), "A_site", "sigma_sq_site"]
    if condition in CLAMP_KINDS:
        keys += ["A_site_preclamp", "sigma_sq_site_preclamp"]
    return keys
