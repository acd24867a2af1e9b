"""Experiment A: per-head constraint and residual clamps on a 1-layer, 4-head transformer.

The task is the original's default (``exp_a_foundation.py``, ``InterleavedSequenceDataset``): two
streams, each a random pattern of 2–7 tokens repeated, interleaved ``A1 B1 A2 B2 ...``; next-token
prediction with the loss over every position; Ψ = accuracy at the **last** position (the original's
``compute_psi_accuracy`` reads ``logits[:, -1]``), whose target is always predictable by copying the
token one period back in its stream (`oracle_predictions` scores 1.0 there). Adam, no weight decay.

Conditions (`CONDITIONS`):

- ``control``: every head trains.
- ``constraint``: heads ``frozen_heads`` (1, 2, 3 as in the original) keep their initial slices of
  W_Q, W_K, W_V, W_O and b_Q, b_K, b_V (`HeadFreeze`): their gradients are zeroed, so Adam's moments
  stay zero and its step is exactly zero, and the slices are copied back after every step as well;
  the run reports whether they are bit-identical at the end. (The original froze the whole
  attention layer; b_O, shared by the heads, trains here.)
- ``naive_clamp``: constraint + `naive_clamp` at ``clamp_hook``: the residual is rescaled so its mean
  token norm is the trained control's, fixing amplitude and variance together.
- ``mean_preserving_clamp``: constraint + `mean_preserving_clamp`: the residual is centred on its mean
  vector over the batch's tokens, the centred part rescaled to the control's std, the mean added back.

Both clamps are TransformerLens forward hooks, applied in training and in every evaluation; their
targets come from `calibrate_clamps` on the trained control of the same seed (its audit log's
``summary.calibration``). Both act on batch statistics, as the original's do, so evaluation uses
batches of the training batch size.
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
from weightlab.separability.design import CLAMPS
from weightlab.separability.design import CONDITIONS as DESIGN_CONDITIONS
from weightlab.separability.observables import LogSchedule, a_learned, a_param, layer_observables, psi_accuracy, routing_plasticity
from weightlab.separability.toy import ToyConfig, ToyTransformer

CONDITIONS = DESIGN_CONDITIONS["a"]  # control, constraint, naive_clamp, mean_preserving_clamp
CONSTRAINED = tuple(c for c in CONDITIONS if c != "control")
CLAMP_KINDS = {condition: condition.removesuffix("_clamp") for condition in CLAMPS}  # naive, mean_preserving
HEAD_PARAMS = ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O")  # the per-head slices (index 0 = head)
PATTERN_LENGTHS = (2, 7)  # each stream's period, uniform over 2..7 (np.random.randint(2, 8) in the original)
PACKAGES = ("transformer-lens",)
_HELDOUT_SEED_OFFSET = 1_000_003  # the held-out set's generator: a stream disjoint from the training data's
_EPS = 1e-8

Hook = tuple[str, Callable[..., torch.Tensor]]


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintConfig:
    """Experiment A's settings (the ``separability.exp_a`` config block)."""

    vocab_size: int = 512
    seq_len: int = 32
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 128
    n_train: int = 10000
    n_heldout: int = 512
    batch_size: int = 64
    lr: float = 1e-3
    epochs: int = 3
    frozen_heads: tuple[int, ...] = (1, 2, 3)
    clamp_hook: str = "blocks.0.hook_resid_post"
    calibration_batches: int = 8
    probe_size: int = 32
    log_dense_every: int = 10
    log_sparse_every: int = 50
    log_dense_until: int = 100
    log_fast_change: float = 0.05

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ConstraintConfig:
        cfg = settings_dataclass(cls, settings, "separability.exp_a", frozen_heads=lambda heads: tuple(int(h) for h in heads))
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

    def model_config(self) -> ToyConfig:
        return ToyConfig(d_vocab=self.vocab_size, n_ctx=self.seq_len, d_model=self.d_model, n_heads=self.n_heads,
                         d_head=self.d_head, d_mlp=self.d_mlp, normalization="LN")

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size  # the last partial batch is dropped (the clamps use batch statistics)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


# --- the task -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterleavedData:
    """Sequences [n, seq_len + 1] of two interleaved repeating patterns and their periods [n, 2]
    (stream A at even positions, stream B at odd ones). Inputs are ``tokens[:, :-1]``, targets
    ``tokens[:, 1:]``."""

    tokens: torch.Tensor
    periods: torch.Tensor

    @property
    def inputs(self) -> torch.Tensor:
        return self.tokens[:, :-1]

    @property
    def targets(self) -> torch.Tensor:
        return self.tokens[:, 1:]

    def __len__(self) -> int:
        return self.tokens.shape[0]


def interleaved_sequences(n: int, seq_len: int, vocab_size: int, generator: torch.Generator) -> InterleavedData:
    """The original's InterleavedSequenceDataset: per sequence and stream, a period p uniform in 2..7
    and p tokens uniform over the vocabulary, repeated; the two streams interleaved A1 B1 A2 B2 ..."""
    tokens = torch.empty(n, seq_len + 1, dtype=torch.long)
    periods = torch.empty(n, 2, dtype=torch.long)
    low, high = PATTERN_LENGTHS
    for stream in (0, 1):
        length = len(range(stream, seq_len + 1, 2))
        period = torch.randint(low, high + 1, (n,), generator=generator)
        pattern = torch.randint(0, vocab_size, (n, high), generator=generator)
        tokens[:, stream::2] = pattern.gather(1, torch.arange(length)[None, :] % period[:, None])
        periods[:, stream] = period
    return InterleavedData(tokens, periods)


def predictable_targets(periods: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Bool [n, seq_len]: target t (token t + 1) is its stream's pattern repeated, so copying the
    token one period back in the same stream predicts it (the first period of each stream cannot)."""
    position = torch.arange(1, seq_len + 1, device=periods.device)
    stream, index = position % 2, position // 2
    return index[None, :] >= periods.gather(1, stream.expand(periods.shape[0], -1))


def oracle_predictions(data: InterleavedData) -> torch.Tensor:
    """The perfect predictor [n, seq_len]: the token one period back in the target's stream where the
    target is predictable, -1 elsewhere (never right)."""
    n, seq_len = data.inputs.shape
    position = torch.arange(1, seq_len + 1, device=data.tokens.device).expand(n, -1)
    back = position - 2 * data.periods.gather(1, (position % 2))
    copied = data.tokens.gather(1, back.clamp_min(0))
    return torch.where(predictable_targets(data.periods, seq_len), copied, torch.full_like(copied, -1))


def last_position_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Ψ: accuracy of the final position's prediction (logits [batch, pos, vocab], targets [batch, pos])."""
    return psi_accuracy(logits[:, -1], targets[:, -1])


# --- clamps (forward hooks) ---------------------------------------------------------------------


def mean_token_norm(resid: torch.Tensor) -> torch.Tensor:
    """Mean L2 norm of the residual vectors over all tokens (a scalar tensor, differentiable)."""
    return resid.reshape(-1, resid.shape[-1]).norm(dim=-1).mean()


def centred_std(resid: torch.Tensor) -> torch.Tensor:
    """Std (n − 1) of all entries after centring the tokens on their mean vector (scalar tensor)."""
    flat = resid.reshape(-1, resid.shape[-1])
    return (flat - flat.mean(0, keepdim=True)).std()


def naive_clamp(resid: torch.Tensor, target_norm: float) -> torch.Tensor:
    """Rescale the whole residual by one factor so its mean token norm is `target_norm`: the mean
    vector (amplitude) and the spread (variance) shrink or grow together."""
    return resid * (target_norm / mean_token_norm(resid).clamp_min(_EPS))


def mean_preserving_clamp(resid: torch.Tensor, healthy_std: float) -> torch.Tensor:
    """Keep the mean vector over tokens, rescale the centred part to std `healthy_std`: the variance
    is fixed, the mean shift (amplitude) is left free."""
    flat = resid.reshape(-1, resid.shape[-1])
    mean = flat.mean(0, keepdim=True)
    centred = flat - mean
    return (mean + centred * (healthy_std / centred.std().clamp_min(_EPS))).reshape(resid.shape)


@dataclass(frozen=True)
class Clamp:
    """A named clamp as a TransformerLens forward hook: ``(clamp.hook, clamp)`` in ``fwd_hooks``."""

    kind: str  # 'naive' or 'mean_preserving'
    hook: str
    target: float  # target_norm (naive) or healthy_std (mean_preserving)

    def __call__(self, resid: torch.Tensor, hook: Any = None) -> torch.Tensor:
        if self.kind == "naive":
            return naive_clamp(resid, self.target)
        return mean_preserving_clamp(resid, self.target)

    def fwd_hook(self) -> Hook:
        return (self.hook, self)

    def describe(self) -> dict[str, Any]:
        key = "target_norm" if self.kind == "naive" else "healthy_std"
        return {"kind": self.kind, "hook": self.hook, key: self.target}


def clamp_for(condition: str, calibration: Mapping[str, Any] | None) -> Clamp | None:
    """The clamp of a condition (None for control and constraint), from the control's calibration."""
    if condition not in CLAMP_KINDS:
        return None
    if not calibration:
        raise InputError(f"condition {condition} needs the clamp calibration of the trained control "
                         "(its audit log's summary.calibration); run the control of the same seed first.")
    kind = CLAMP_KINDS[condition]
    return Clamp(kind, calibration["hook"], float(calibration["target_norm" if kind == "naive" else "healthy_std"]))


@torch.no_grad()
def calibrate_clamps(model: ToyTransformer, inputs: torch.Tensor, hook: str, batch_size: int, max_batches: int) -> dict[str, Any]:
    """The clamps' targets from a (trained, unclamped) model: the mean over batches of the mean token
    norm (`target_norm`) and of the centred std (`healthy_std`) at `hook`, as the original's
    ClampCalibrator computes them."""
    norms, stds = [], []
    for start in range(0, min(len(inputs), batch_size * max_batches), batch_size):
        _, cache = model.run_with_cache(inputs[start:start + batch_size], names_filter=hook)
        if hook not in cache:
            raise InputError(f"clamp hook {hook!r} is not a hook point of the model; use e.g. blocks.0.hook_resid_post.")
        norms.append(float(mean_token_norm(cache[hook])))
        stds.append(float(centred_std(cache[hook])))
    return {"hook": hook, "target_norm": sum(norms) / len(norms), "healthy_std": sum(stds) / len(stds), "batches": len(norms)}


# --- per-head freezing --------------------------------------------------------------------------


class HeadFreeze:
    """Freeze heads of one attention layer at their current values, slice by slice.

    Each parameter in `HEAD_PARAMS` ([head, ...]) gets a gradient hook that zeroes the frozen heads'
    rows, so an optimiser without weight decay (Adam here) keeps zero moments and takes an exactly
    zero step there; `restore` copies the saved slices back after each step as well, so no optimiser
    setting can move them. `report` measures what changed since the freeze."""

    def __init__(self, model: ToyTransformer, heads: Sequence[int], layer: int = 0):
        attn = model.blocks[layer].attn
        self.params = {name: getattr(attn, name) for name in HEAD_PARAMS}
        n_heads = attn.W_Q.shape[0]
        self.frozen = sorted({int(h) for h in heads})
        if any(not 0 <= h < n_heads for h in self.frozen):
            raise InputError(f"frozen heads {self.frozen} are outside 0..{n_heads - 1}.")
        self.free = [h for h in range(n_heads) if h not in self.frozen]
        self.initial = {name: p.detach().clone() for name, p in self.params.items()}
        self._handles = [p.register_hook(self._mask) for p in self.params.values()] if self.frozen else []

    def _mask(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[self.frozen] = 0
        return grad

    @torch.no_grad()
    def restore(self) -> None:
        for name, param in self.params.items():
            if self.frozen:
                param[self.frozen] = self.initial[name][self.frozen]

    @torch.no_grad()
    def report(self) -> dict[str, Any]:
        """Whether every frozen slice is bit-identical to its initial value, and the largest absolute
        change of the frozen and of the free slices (None where there are none)."""

        def max_change(heads: list[int]) -> float | None:
            if not heads:
                return None
            return max(float((p[heads] - self.initial[n][heads]).abs().max()) for n, p in self.params.items())

        identical = all(torch.equal(p[self.frozen], self.initial[n][self.frozen]) for n, p in self.params.items())
        return {
            "frozen_slices_identical": identical if self.frozen else None,
            "max_abs_change_frozen": max_change(self.frozen),
            "max_abs_change_free": max_change(self.free),
        }

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


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
def probe(model: ToyTransformer, tokens: torch.Tensor, clamp: Clamp | None, resid_hook: str = "blocks.0.hook_resid_post",
          pattern_hook: str = "blocks.0.attn.hook_pattern") -> tuple[torch.Tensor, dict[str, float]]:
    """The attention pattern and the residual observables on the probe batch: A_activation_L0 and
    sigma_sq_L0 of the residual the rest of the model sees (after the clamp), and with a clamp at
    that hook also ``*_preclamp`` (what the layer produced before it)."""
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str) -> Callable[..., None]:
        def hook(value: torch.Tensor, hook: Any = None) -> None:
            seen[key] = value.detach().clone()
        return hook

    hooks: list[Hook] = [(pattern_hook, keep("pattern")), (resid_hook, keep("pre"))]
    if clamp is not None:
        hooks.append(clamp.fwd_hook())
    hooks.append((resid_hook, keep("post")))
    model.run_with_hooks(tokens, fwd_hooks=hooks)
    values = layer_observables([seen["post"]])
    if clamp is not None and clamp.hook == resid_hook:
        values.update({f"{k}_preclamp": v for k, v in layer_observables([seen["pre"]]).items()})
    return seen["pattern"], values


def amplitude_params(model: ToyTransformer, free_heads: Sequence[int]) -> dict[str, float | None]:
    """A_param (all value projections), A_param_free (the free heads' W_V only) and A_learned."""
    return {
        "A_param": a_param(model.value_weights()),
        "A_param_free": a_param([w[list(free_heads)] for w in model.value_weights()]),
        "A_learned": a_learned(model.ln_final_scale()),
    }


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
    clamp = clamp_for(condition, calibration)
    device = torch.device(device)
    train, heldout = task_data(cfg, seed)
    train_tokens, probe_tokens = train.tokens.to(device), heldout.inputs[: cfg.probe_size].to(device)
    heldout = InterleavedData(heldout.tokens.to(device), heldout.periods.to(device))
    model = build_model(cfg, seed).to(device)
    freeze = HeadFreeze(model, cfg.frozen_heads if condition in CONSTRAINED else ())
    hooks = [clamp.fwd_hook()] if clamp else []
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)  # the original's optimiser: Adam, no weight decay
    schedule = LogSchedule(cfg.total_steps + 1, cfg.log_dense_every, cfg.log_sparse_every, cfg.log_dense_until,
                           cfg.log_fast_change, band=None)
    log = AuditLog("a", condition, seed, dict(settings) if settings is not None else dataclasses.asdict(cfg), PACKAGES)
    log.checkpoint(0, model.state_dict())
    order = torch.Generator().manual_seed(seed + 1)
    previous_pattern: torch.Tensor | None = None
    last_train: dict[str, float] = {}

    def record(step: int) -> dict[str, Any]:
        nonlocal previous_pattern
        model.eval()
        pattern, residual = probe(model, probe_tokens, clamp)
        metrics = {
            **evaluate(model, heldout, hooks, cfg.batch_size),
            "loss": last_train.get("loss"),
            "train_accuracy": last_train.get("accuracy"),
            "G": None if previous_pattern is None else routing_plasticity(previous_pattern, pattern),
            **amplitude_params(model, freeze.free),
            **residual,
        }
        previous_pattern = pattern
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
            tokens = train_tokens[rows.to(device)]
            logits = forward(model, tokens[:, :-1], hooks)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
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
    summary: dict[str, Any] = {
        "final_psi_accuracy": final["psi_accuracy"],
        "final_heldout_loss": final["heldout_loss"],
        "final_accuracy_predictable": final["accuracy_predictable"],
        "oracle_psi_accuracy": _oracle_accuracy(heldout),
        **{f"final_{k}": final.get(k) for k in ("A_activation_L0", "sigma_sq_L0", "A_param", "A_param_free", "A_learned",
                                                 "A_activation_L0_preclamp", "sigma_sq_L0_preclamp") if k in final},
        "frozen_heads": freeze.frozen,
        "free_heads": freeze.free,
        **freeze_report,
        "clamp": clamp.describe() if clamp else None,
        "steps_per_epoch": cfg.steps_per_epoch,
        "epochs": cfg.epochs,
        "heldout_sequences": len(heldout) - len(heldout) % cfg.batch_size,
    }
    if condition == "control":
        summary["calibration"] = calibrate_clamps(model, heldout.inputs, cfg.clamp_hook, cfg.batch_size, cfg.calibration_batches)
    document = log.document(step, **summary)
    return ConstraintRun(model, document, clamp, freeze_report)


def _oracle_accuracy(data: InterleavedData) -> float:
    """The perfect predictor's Ψ on a data set (1.0 when the task is what it claims)."""
    return float((oracle_predictions(data)[:, -1] == data.targets[:, -1]).float().mean())


def calibration_from_control(control_log: Mapping[str, Any], seed: int, hook: str, where: str = "control log") -> dict[str, Any]:
    """The clamp calibration stored by the trained control of the same seed, checked."""
    summary = control_log.get("summary", {})
    calibration = summary.get("calibration")
    if not isinstance(calibration, Mapping) or not {"hook", "target_norm", "healthy_std"} <= set(calibration):
        raise InputError(f"{where} has no summary.calibration {{hook, target_norm, healthy_std}}; re-run the control of experiment A.")
    if control_log.get("metadata", {}).get("seed") != seed:
        raise InputError(f"{where} is for seed {control_log.get('metadata', {}).get('seed')}, not {seed}; "
                         "clamps are calibrated on the control of the same seed.")
    if calibration["hook"] != hook:
        raise InputError(f"{where} calibrated the clamp at {calibration['hook']!r} but clamp_hook is {hook!r}; re-run the control.")
    for key in ("target_norm", "healthy_std"):
        value = calibration[key]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InputError(f"{where}: calibration {key}={value!r} is not a positive number; re-run the control.")
    return dict(calibration)


def metric_keys(condition: str) -> Iterable[str]:
    """The metric keys logged at every step for a condition (for readers and tests)."""
    keys = ["psi_accuracy", "heldout_loss", "accuracy_predictable", "loss", "train_accuracy", "G", "A_param", "A_param_free",
            "A_learned", "A_activation_L0", "sigma_sq_L0"]
    if condition in CLAMP_KINDS:
        keys += ["A_activation_L0_preclamp", "sigma_sq_L0_preclamp"]
    return keys
