"""Experiment C: grokking of modular addition, with and without weight decay.

The task and model follow Nanda et al. (2023, "Progress measures for grokking via mechanistic
interpretability"): inputs ``a b =`` (tokens ``a``, ``b`` in [0, p) and ``=`` = p), the label
``(a + b) mod p`` read at the ``=`` position; a one-layer transformer without LayerNorm or biases
(d_model 128, 4 heads of 32, ReLU MLP of 512: `ToyTransformer` with its biases zeroed and
frozen, and the MLP at the answer position only, which is exact here); AdamW with betas (0.9,
0.98) after a linear warm-up (Nanda's 10 steps), full-batch gradient descent on a seeded
fraction of the p² pairs, the rest held out. Conditions: ``high_wd`` (weight decay
1.0) and ``no_wd`` (0.0); one seed gives both the same split, probe batch and initialisation.

Logged at each step of the `LogSchedule` (Ψ = test accuracy drives it): train/test loss and
accuracy, ``psi_accuracy`` (= test accuracy), ``A_param`` (Frobenius norm of W_V), ``G`` (1 − JSD
of the answer position's attention pattern on a fixed probe batch between consecutive logs; None
at the first log), ``weight_norm`` (all parameters), ``A_activation_L0`` and ``sigma_sq_L0`` (the
answer position's residual on the probe batch). "Step s" is the model after s updates.

Analysis (`analyse`): the transition step (first logged step with test accuracy > 0.9 after one
< 0.2), Spearman ρ between the velocities of test accuracy and A_param inside the transition
window, from the last logged step below 0.2 to the first above 0.9 (`transition_window`; the
original's band 0.15 < acc < 0.85 took mostly plateau points; it is kept as ``band_correlation``),
with its 95% interval within the run (``rho_ci95``: a moving-block bootstrap over the window's
logged steps, `rho_interval`; over seeds the criterion takes the interval of the seeds' ρ), and
with a lagged correlation as a secondary (`lagged_correlation`) (velocities are finite differences
per training step over the logged steps, ``np.gradient`` with the step spacing, taken on the whole
series and then windowed), A_param initial / peak / final,
and the known answer: the embedding's Fourier spectrum over Z_p concentrates on a few key
frequencies after grokking (`fourier_norms`, `key_frequencies`).

Differences from the original's ``exp_c_grokking.py``, on purpose: it used Adam with an L2
penalty of 1.0 (not AdamW's decoupled decay), LayerNorm, minibatches of 128, separate a/b
vocabularies without an ``=`` token, and reported Pearson's r between accuracy and A_param over the
whole run; here the setup is Nanda's and ρ is the original's documented statistic (Spearman on
velocities inside the transition window); the code's Pearson r is reported beside it
(``original_code_pearson_r``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from tqdm import tqdm

from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.observables import LogSchedule, a_param, layer_observables, routing_plasticity
from weightlab.separability.toy import ToyConfig, ToyTransformer
from weightlab.stats import block_bootstrap_interval

WEIGHT_DECAY = {"high_wd": 1.0, "no_wd": 0.0}  # the two conditions (issue and original)
TRANSITION = (0.2, 0.9)  # test accuracy first below, later above: the transition
WINDOW = (0.15, 0.85)  # the ρ window on test accuracy (the original's)
MIN_RHO_POINTS = 3
LAG_MAX_STEPS = 500  # the lagged correlation's range of lags (a few hundred steps: the transition's own length)
TRAIN_FIT = 0.99  # train accuracy counted as memorised
PATTERN_HOOK = "blocks.0.attn.hook_pattern"
RESID_HOOK = "blocks.0.hook_resid_post"


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrokkingConfig:
    """Experiment C's settings (``separability.exp_c``); every key is described in the schema."""

    p: int
    train_fraction: float
    steps: int
    lr: float
    betas: tuple[float, float]
    warmup_steps: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    probe_size: int
    log_dense_every: int
    log_sparse_every: int
    log_dense_until: int
    key_frequency_factor: float

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> GrokkingConfig:
        """The training fields of ``separability.exp_c`` (``seeds`` belongs to the workflow)."""
        cfg = settings_dataclass(cls, settings, "separability.exp_c", betas=lambda betas: tuple(float(b) for b in betas))
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise InputError for settings the experiment cannot run with."""
        problems = []
        if self.p < 3 or any(self.p % d == 0 for d in range(2, math.isqrt(self.p) + 1)):
            problems.append(f"p ({self.p}) must be an odd prime")
        n_train = train_size(self.p, self.train_fraction) if self.p > 0 else 0
        if not 0 < self.train_fraction < 1 or n_train < 1 or n_train >= self.p**2:
            problems.append(f"train_fraction ({self.train_fraction}) must leave at least one pair in each split")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas ({list(self.betas)}) must be two numbers in [0, 1)")
        if min(self.steps, self.d_model, self.n_heads, self.d_head, self.d_mlp, self.probe_size,
               self.log_dense_every, self.log_sparse_every) < 1 or self.warmup_steps < 0 or self.log_dense_until < 0:
            problems.append("steps, model sizes, probe_size and log intervals must be >= 1; warmup_steps, log_dense_until >= 0")
        if self.lr <= 0 or self.key_frequency_factor <= 1:
            problems.append(f"lr ({self.lr}) must be > 0 and key_frequency_factor ({self.key_frequency_factor}) > 1")
        if problems:
            raise InputError("separability.exp_c: " + "; ".join(problems) + ".")

    def model_config(self) -> ToyConfig:
        """Nanda's one-layer model: vocabulary 0..p-1 and '=' (= p), outputs 0..p-1, no LayerNorm."""
        return ToyConfig(d_vocab=self.p + 1, n_ctx=3, d_model=self.d_model, n_heads=self.n_heads, d_head=self.d_head,
                         n_layers=1, d_mlp=self.d_mlp, normalization=None, mlp_positions="last", d_vocab_out=self.p)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["betas"] = list(self.betas)
        return values


def weight_decay_of(condition: str) -> float:
    if condition not in WEIGHT_DECAY:
        raise InputError(f"experiment c has no condition '{condition}'; choose from {sorted(WEIGHT_DECAY)}.")
    return WEIGHT_DECAY[condition]


# --- data ---------------------------------------------------------------------------------------


def train_size(p: int, train_fraction: float) -> int:
    return int(round(train_fraction * p * p))


@dataclass
class ModularAddition:
    """All p² problems ``a b =`` split into disjoint train and test sets (indices into `tokens`)."""

    p: int
    tokens: torch.Tensor  # [p², 3]: a, b, '=' (= p); row a·p + b
    labels: torch.Tensor  # [p²]: (a + b) mod p
    train: torch.Tensor  # row indices
    test: torch.Tensor
    probe: torch.Tensor  # a fixed subset of all rows, for G

    def to(self, device: torch.device | str) -> ModularAddition:
        return ModularAddition(self.p, self.tokens.to(device), self.labels.to(device), self.train.to(device),
                               self.test.to(device), self.probe.to(device))


def modular_addition(p: int, train_fraction: float, seed: int, probe_size: int = 512) -> ModularAddition:
    """Every pair (a, b), a seeded random split with round(train_fraction · p²) training pairs, and
    a seeded probe batch of min(probe_size, p²) pairs drawn from all of them."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(p * p, generator=generator)
    n_train = train_size(p, train_fraction)
    probe = torch.randperm(p * p, generator=generator)[: min(probe_size, p * p)]
    return ModularAddition(p, tokens, (a + b) % p, order[:n_train].sort().values, order[n_train:].sort().values, probe.sort().values)


# --- analysis -----------------------------------------------------------------------------------


def fourier_basis(p: int) -> torch.Tensor:
    """Orthonormal Fourier basis of functions on Z_p (p odd), one basis vector per row, in the
    order constant, cos 1, sin 1, cos 2, sin 2, ..., cos K, sin K with K = (p − 1) / 2."""
    if p < 3 or p % 2 == 0:
        raise InputError(f"the Fourier basis here needs an odd p, got {p}")
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def fourier_norms(embedding: torch.Tensor) -> np.ndarray:
    """Per frequency k = 0..(p−1)/2, the norm of the embedding W_E [p, d_model] (rows = tokens
    0..p−1) projected onto frequency k of Z_p: sqrt(‖cos_kᵀ W_E‖² + ‖sin_kᵀ W_E‖²); k = 0 is the
    constant component. Squared norms sum to ‖W_E‖²_F."""
    p = embedding.shape[0]
    coefficients = fourier_basis(p) @ embedding.detach().cpu().double()  # [p, d_model]
    energy = coefficients.pow(2).sum(1)
    per_frequency = torch.cat([energy[:1], energy[1:].reshape(-1, 2).sum(1)])
    return per_frequency.sqrt().numpy()


def key_frequencies(norms: Sequence[float], factor: float) -> dict[str, Any]:
    """Key frequencies: the non-constant frequencies whose energy (squared norm) exceeds `factor`
    times the median energy of the non-constant frequencies; `share` is their part of the total
    energy (constant included). A random embedding has none (its energies are nearly equal)."""
    energy = np.asarray(norms, dtype=float) ** 2
    if energy.size < 2:
        raise InputError("key_frequencies needs the constant and at least one frequency")
    periodic = energy[1:]
    threshold = factor * float(np.median(periodic))
    keys = [int(k) for k in np.flatnonzero(periodic > threshold) + 1]
    total = float(energy.sum())
    keys.sort(key=lambda k: -energy[k])
    return {"key_frequencies": keys, "share": float(energy[keys].sum() / total) if total > 0 else None,
            "threshold_energy": threshold}


def velocities(steps: Sequence[int], values: Sequence[float]) -> np.ndarray:
    """d(value)/d(step) at each logged step: second-order finite differences over the (uneven)
    logged steps, one-sided at the ends (``np.gradient`` with the step spacing)."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("velocities need two or more (step, value) pairs of equal length")
    if np.any(np.diff(x) <= 0):
        raise ValueError("logged steps must be strictly increasing")
    return np.gradient(y, x)


def window_mask(accuracy: Sequence[float], window: tuple[float, float] = WINDOW) -> np.ndarray:
    """True where window[0] < accuracy < window[1] (the transition band)."""
    acc = np.asarray(accuracy, dtype=float)
    return (acc > window[0]) & (acc < window[1])


def velocity_correlation(steps: Sequence[int], accuracy: Sequence[float], amplitude: Sequence[float],
                         window: tuple[float, float] = WINDOW, min_points: int = MIN_RHO_POINTS) -> dict[str, Any]:
    """Spearman ρ between the velocities of accuracy and amplitude at the logged steps whose
    accuracy lies inside `window`; ρ is None, with the reason, when it cannot be computed."""
    result: dict[str, Any] = {"spearman_rho": None, "spearman_p_value": None, "rho_ci95": None, "rho_points": 0,
                              "rho_reason": None}
    if len(steps) < 2:
        result["rho_reason"] = f"only {len(steps)} logged step(s)"
        return result
    return _windowed_rho(steps, accuracy, amplitude, window_mask(accuracy, window), result,
                         f"with {window[0]} < test accuracy < {window[1]}", min_points)


def _windowed_rho(steps: Sequence[int], accuracy: Sequence[float], amplitude: Sequence[float], mask: np.ndarray,
                  result: dict[str, Any], where: str, min_points: int) -> dict[str, Any]:
    """`result` with Spearman ρ of the velocities (taken on the whole series) at the masked steps;
    with fewer than `min_points` of them, the reason (`where` names the window) instead."""
    n = int(mask.sum())
    result["rho_points"] = n
    if n < min_points:
        result["rho_reason"] = f"{n} logged step(s) {where}; ρ needs at least {min_points}"
        return result
    v_acc, v_amp = velocities(steps, accuracy)[mask], velocities(steps, amplitude)[mask]
    if np.ptp(v_acc) == 0 or np.ptp(v_amp) == 0:
        result["rho_reason"] = "a velocity is constant inside the window"
        return result
    rho, p_value = spearmanr(v_acc, v_amp)
    result.update(spearman_rho=float(rho), spearman_p_value=float(p_value), rho_ci95=rho_interval(v_acc, v_amp))
    return result


def rho_interval(v_acc: np.ndarray, v_amp: np.ndarray, seed: int = 0) -> list[float] | None:
    """95% interval of Spearman ρ within one run: the moving-block bootstrap over the window's
    consecutive logged steps (`weightlab.stats.block_bootstrap_interval`, blocks of about n^(1/3)
    steps), since neighbouring velocities of a smooth curve are not independent. It is the run's
    own uncertainty (which points of its curve were logged), not the spread over seeds."""
    def rho(a: np.ndarray, b: np.ndarray) -> float:
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return float("nan")
        return float(spearmanr(a, b)[0])

    return block_bootstrap_interval((v_acc, v_amp), rho, seed=seed)


def transition_window(steps: Sequence[int], accuracy: Sequence[float | None], low: float = TRANSITION[0],
                      high: float = TRANSITION[1]) -> tuple[int, int] | None:
    """The transition itself: (last logged step with accuracy < `low` before the first logged step
    with accuracy > `high` that follows one below `low`, that first step); None without a transition."""
    end = transition_step(steps, accuracy, low, high)
    if end is None:
        return None
    start = max(int(s) for s, a in zip(steps, accuracy) if a is not None and a < low and s < end)
    return start, end


def transition_correlation(steps: Sequence[int], accuracy: Sequence[float], amplitude: Sequence[float],
                           min_points: int = MIN_RHO_POINTS) -> dict[str, Any]:
    """Spearman ρ between the velocities of accuracy and amplitude at the logged steps inside the
    transition window (`transition_window`, ends included); velocities are taken on the whole
    series, then windowed. ρ is None, with the reason, without a transition or with too few points."""
    result: dict[str, Any] = {"spearman_rho": None, "spearman_p_value": None, "rho_ci95": None, "rho_points": 0,
                              "rho_reason": None, "rho_window": None}
    window = transition_window(steps, accuracy)
    if window is None:
        result["rho_reason"] = f"no transition (test accuracy below {TRANSITION[0]}, later above {TRANSITION[1]})"
        return result
    result["rho_window"] = list(window)
    x = np.asarray(steps)
    mask = (x >= window[0]) & (x <= window[1])
    return _windowed_rho(steps, accuracy, amplitude, mask, result, f"in the transition window {list(window)}", min_points)


def lagged_correlation(steps: Sequence[int], accuracy: Sequence[float], amplitude: Sequence[float], max_lag: int,
                       grid: int = 10) -> dict[str, Any]:
    """A secondary: Spearman ρ between the velocity of accuracy at step t and that of A_param at
    t − lag, for lags 0, ±grid, … ±max_lag steps, on the series resampled to a `grid`-step grid
    (linear interpolation) over the whole run; reports every lag's ρ and the most negative one
    (``lag`` > 0: A_param moves first)."""
    x = np.asarray(steps, dtype=float)
    if x.size < 4 or max_lag < 0:
        return {"rho": None, "lag": None, "by_lag": {}, "reason": "too few logged steps"}
    uniform = np.arange(x[0], x[-1] + 1, grid)
    v_acc = np.gradient(np.interp(uniform, x, np.asarray(accuracy, dtype=float)), uniform)
    v_amp = np.gradient(np.interp(uniform, x, np.asarray(amplitude, dtype=float)), uniform)
    by_lag: dict[int, float] = {}
    for lag in range(-(max_lag // grid), max_lag // grid + 1):
        a, b = (v_acc[lag:], v_amp[: v_amp.size - lag]) if lag >= 0 else (v_acc[:lag], v_amp[-lag:])
        if a.size >= MIN_RHO_POINTS and np.ptp(a) > 0 and np.ptp(b) > 0:
            by_lag[lag * grid] = float(spearmanr(a, b)[0])
    if not by_lag:
        return {"rho": None, "lag": None, "by_lag": {}, "reason": "constant velocities"}
    lag = min(by_lag, key=lambda k: by_lag[k])
    return {"rho": by_lag[lag], "lag": lag, "by_lag": {str(k): v for k, v in by_lag.items()}, "grid_steps": grid, "reason": None}


def level_correlation(accuracy: Sequence[float], amplitude: Sequence[float]) -> float | None:
    """Pearson r between accuracy and A_param themselves over every logged step: the statistic
    the original's code computes (its README documents the windowed ρ of velocities instead)."""
    acc, amp = np.asarray(accuracy, dtype=float), np.asarray(amplitude, dtype=float)
    if acc.size < 2 or np.ptp(acc) == 0 or np.ptp(amp) == 0:
        return None
    return float(np.corrcoef(acc, amp)[0, 1])


def transition_step(steps: Sequence[int], accuracy: Sequence[float | None], low: float = TRANSITION[0],
                    high: float = TRANSITION[1]) -> int | None:
    """First logged step with accuracy > `high` after a logged accuracy < `low`; None if none."""
    seen_low = False
    for step, acc in zip(steps, accuracy):
        if acc is None:
            continue
        if acc < low:
            seen_low = True
        elif seen_low and acc > high:
            return int(step)
    return None


def first_step_above(steps: Sequence[int], values: Sequence[float | None], level: float) -> int | None:
    return next((int(s) for s, v in zip(steps, values) if v is not None and v > level), None)


def analyse(log: AuditLog, initial_embedding: torch.Tensor, final_embedding: torch.Tensor, factor: float) -> dict[str, Any]:
    """The run's summary from its logged metrics and its embedding before and after training."""
    steps, test_acc = log.series("test_accuracy")
    _, train_acc = log.series("train_accuracy")
    _, amplitude = log.series("A_param")
    peak = int(np.argmax(amplitude))
    norms, initial_norms = fourier_norms(final_embedding), fourier_norms(initial_embedding)
    keys, initial_keys = key_frequencies(norms, factor), key_frequencies(initial_norms, factor)
    fit, grok = first_step_above(steps, train_acc, TRAIN_FIT), transition_step(steps, test_acc)
    return {
        "transition_step": grok,
        "train_fit_step": fit,
        "grokking_delay_steps": None if grok is None or fit is None else grok - fit,
        "initial_test_accuracy": test_acc[0],
        "final_test_accuracy": test_acc[-1],
        "final_train_accuracy": train_acc[-1],
        **transition_correlation(steps, test_acc, amplitude),
        "band_correlation": velocity_correlation(steps, test_acc, amplitude),  # the original's 0.15 < acc < 0.85 band
        "lagged_correlation": lagged_correlation(steps, test_acc, amplitude, max_lag=LAG_MAX_STEPS),
        "original_code_pearson_r": level_correlation(test_acc, amplitude),
        "A_param_initial": amplitude[0],
        "A_param_peak": amplitude[peak],
        "A_param_peak_step": steps[peak],
        "A_param_final": amplitude[-1],
        "A_param_final_over_peak": amplitude[-1] / amplitude[peak] if amplitude[peak] else None,
        "key_frequencies": keys["key_frequencies"],
        "key_frequency_share": keys["share"],
        "fourier_norms": [float(v) for v in norms],
        "initial_key_frequencies": initial_keys["key_frequencies"],
        "initial_key_frequency_share": initial_keys["share"],
        "initial_fourier_norms": [float(v) for v in initial_norms],
    }


# --- training -----------------------------------------------------------------------------------


def build_model(cfg: GrokkingConfig, seed: int) -> ToyTransformer:
    """The seeded initialisation (independent of the caller's random state). Nanda's model has no
    biases: ToyTransformer's are set to zero and frozen."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyTransformer(cfg.model_config())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_bias(name):
                param.zero_()  # they start at zero; they stay there (Nanda et al.'s model has none)
            param.requires_grad_(not is_bias(name))
    return model


def is_bias(name: str) -> bool:
    """TransformerLens names biases b_Q, b_K, b_V, b_O, b_in, b_out, b_U."""
    return name.rsplit(".", 1)[-1].startswith("b_")


@torch.no_grad()
def measure(model: ToyTransformer, data: ModularAddition, train_logits: torch.Tensor, train_loss: torch.Tensor) -> dict[str, Any]:
    """Train/test loss and accuracy, A_param, weight norm, and the probe batch's answer-position
    attention pattern [probe, head, 1, key] and residual (returned under 'pattern', 'resid')."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(value: torch.Tensor, hook: Any) -> None:
            captured[name] = value[:, :, -1:, :].clone() if name == "pattern" else value[:, -1].clone()
        return hook

    test_logits = model(data.tokens[data.test])[:, -1]
    test_labels = data.labels[data.test]
    with model.hooks(fwd_hooks=[(PATTERN_HOOK, keep("pattern")), (RESID_HOOK, keep("resid"))]):
        model(data.tokens[data.probe])
    test_acc = float((test_logits.argmax(-1) == test_labels).float().mean())
    return {
        "train_loss": float(train_loss),
        "train_accuracy": float((train_logits.argmax(-1) == data.labels[data.train]).float().mean()),
        "test_loss": float(F.cross_entropy(test_logits, test_labels)),
        "test_accuracy": test_acc,
        "psi_accuracy": test_acc,
        "A_param": a_param(model.value_weights()),
        "weight_norm": math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters())),
        "pattern": captured["pattern"].cpu(),
        "resid": captured["resid"],
    }


def train_grokking(cfg: GrokkingConfig, condition: str, seed: int, device: torch.device | str, log: AuditLog,
                   desc: str = "grokking") -> tuple[ToyTransformer, dict[str, Any]]:
    """Train one condition full-batch for ``cfg.steps`` updates, recording into `log`; returns the
    trained model and the summary (`analyse`, plus the condition's settings)."""
    weight_decay = weight_decay_of(condition)
    data = modular_addition(cfg.p, cfg.train_fraction, seed, cfg.probe_size).to(device)
    model = build_model(cfg, seed).to(device).train()
    initial_embedding = model.embed.W_E[: cfg.p].detach().clone()
    log.checkpoint(0, model.state_dict())
    trained = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, betas=cfg.betas, weight_decay=weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    schedule = LogSchedule(total_steps=cfg.steps + 1, dense_every=cfg.log_dense_every, sparse_every=cfg.log_sparse_every,
                           dense_until=cfg.log_dense_until, band=WINDOW)
    train_tokens, train_labels = data.tokens[data.train], data.labels[data.train]
    previous: torch.Tensor | None = None
    progress = tqdm(range(cfg.steps + 1), desc=desc, file=sys.stderr, mininterval=5, ascii=True)
    for step in progress:
        logits = model(train_tokens)[:, -1]
        loss = F.cross_entropy(logits, train_labels)
        if schedule.due(step):
            point = measure(model, data, logits.detach(), loss.detach())
            pattern, resid = point.pop("pattern"), point.pop("resid")
            g = routing_plasticity(previous, pattern) if previous is not None else None
            log.record(step, **point, G=g, **layer_observables([resid]))
            schedule.observe(point["test_accuracy"])
            previous = pattern
            progress.set_postfix(train=f"{point['train_accuracy']:.2f}", test=f"{point['test_accuracy']:.2f}",
                                 A_param=f"{point['A_param']:.2f}", refresh=False)
        if step == cfg.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        warmup.step()
    model.eval()
    summary = analyse(log, initial_embedding, model.embed.W_E[: cfg.p].detach(), cfg.key_frequency_factor)
    log.checkpoint(cfg.steps, model.state_dict())
    return model, {"condition": condition, "weight_decay": weight_decay, "p": cfg.p, "n_train": int(data.train.numel()),
                   "n_test": int(data.test.numel()), **summary}
