"""Experiment D: a toy model of superposition, its suppressor units found by ablation, and their variance.

The model is Elhage et al.'s (2022, "Toy Models of Superposition") model **with a ReLU hidden layer**
(their section "Superposition in a privileged basis"): ``h = ReLU(W x)``, ``x' = ReLU(Wᵀ h + b)``,
with ``W`` of shape [m, n], n sparse features squeezed into m < n hidden neurons. The ReLU on h
makes the hidden basis privileged: rotating the hidden space changes the model's function, so a
single neuron can have a role (carry a feature, suppress one). ``hidden_activation: linear`` gives
the ReLU output model ``x' = ReLU(WᵀW x + b)``, whose hidden basis is not privileged (the loss is
unchanged by ``W → R W`` for any rotation R), so no single hidden dimension can be a suppressor
there: its ablation ratios all come out alike (0.70–0.79 in our runs).

Feature i is zero with probability S (the sparsity) and uniform on [0, 1] otherwise (feature
probability 1 − S); its importance is ``decay**i``; the loss is the importance-weighted squared
error, averaged over the batch and the features and summed over `n_instances` models that train
side by side (independent initialisations, same data distribution, as in Elhage's code); AdamW.

Precondition (`superposition_measures`): the model is in superposition — more features represented
(‖W_i‖ > 0.5, Elhage's threshold) than hidden dimensions, with their interference
``Σ_{j≠i} (Ŵ_i · W_j)²`` measured; without it the experiment cannot test its claim.

Units and suppressors (the original's `exp_d_superposition.py`, carried over to this model):

- A *unit* is one hidden neuron ``h_j`` of one instance. Like an attention head writing into the
  residual stream, it writes ``W[j, :] * h_j`` into the output pre-activation.
- *Ablating* unit j replaces ``h_j`` by 0 (``zero``, what the original does to a head) or by its
  mean over the batch (``mean``), through the named hook ``hook_hidden``; nothing else changes.
- The *downstream variance* of an instance is σ² of its output ``x'`` over a batch of inputs: the
  variance of each output feature about its mean, averaged over the features (`output_variance`,
  the same σ² as ``observables.sigma_sq``).
- Unit j is a **suppressor** when ablating it raises its instance's downstream variance by more
  than the threshold: ``σ²(x' | h_j ablated) / σ²(x') > suppressor_threshold`` (1.5 in the
  original). Every other unit is **clean** (the original's "clean heads" are the non-suppressor
  heads of the same layer). A unit whose ablation changes nothing has ratio 1: clean. Where an
  instance's intact output has no variance at all the ratio is undefined and its units are
  "undetermined", in neither group.

The identification never looks at a unit's own variance, so comparing variances afterwards is
not circular; it is also made on a batch of inputs independent of the one the variances are
measured on. The comparison is ``mean Var(h_j) over suppressors / mean Var(h_j) over clean
units``, with a seeded BCa bootstrap 95% interval that resamples units within each group
(`scipy.stats.bootstrap`, two independent samples). The original's criteria: ratio > 2 and an
interval that excludes 1.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.observables import LogSchedule, a_activation, sigma_sq
from weightlab.stats import bootstrap_interval

ABLATIONS = ("zero", "mean")
HIDDEN_ACTIVATIONS = ("relu", "linear")  # relu: privileged basis (Elhage et al.'s ReLU hidden layer); linear: the ReLU output model
REPRESENTED_NORM = 0.5  # a feature is represented when its column of W has norm above this (Elhage et al.)
CONFIDENCE = 0.95  # the bootstrap interval is a 95% one, as in the original
HOOK = "hook_hidden"

DEFINITION = (
    "unit = one hidden neuron h_j of one instance of {model}; "
    "ablation = replace h_j by {ablation} (hook_hidden) on an identification batch of n_samples inputs; "
    "downstream variance = sigma^2 of the instance's output x' (per-feature variance over the batch, averaged over features); "
    "suppressor: downstream variance with the unit ablated / without > {threshold}; clean: every other unit with a defined ratio; "
    "compared quantity: Var(h_j) over an independent measurement batch of n_samples inputs."
)

MODELS = {"relu": "the ReLU-hidden-layer model h = ReLU(W x), x' = ReLU(W^T h + b) (a privileged basis)",
          "linear": "the ReLU output model h = W x, x' = ReLU(W^T h + b) (no privileged basis)"}

Hook = Callable[[torch.Tensor], torch.Tensor]


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuperpositionConfig:
    """Experiment D's settings (``separability.exp_d``); every key is described in the schema."""

    n_features: int
    n_hidden: int
    n_instances: int
    feature_probability: float
    importance_decay: float
    train_steps: int
    batch_size: int
    lr: float
    weight_decay: float
    n_samples: int
    suppressor_threshold: float
    ablation: str
    n_bootstrap: int
    log_every: int
    hidden_activation: str = "relu"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SuperpositionConfig:
        cfg = settings_dataclass(cls, settings, "separability.exp_d")
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise InputError for settings the experiment cannot run with."""
        problems = []
        if not 0 < self.n_hidden < self.n_features:
            problems.append(f"n_hidden ({self.n_hidden}) must lie between 1 and n_features − 1 ({self.n_features - 1})")
        if not 0 < self.feature_probability <= 1:
            problems.append(f"feature_probability ({self.feature_probability}) must lie in (0, 1]")
        if not 0 < self.importance_decay <= 1:
            problems.append(f"importance_decay ({self.importance_decay}) must lie in (0, 1]")
        if self.hidden_activation not in HIDDEN_ACTIVATIONS:
            problems.append(f"hidden_activation '{self.hidden_activation}' must be one of {', '.join(HIDDEN_ACTIVATIONS)}")
        if self.ablation not in ABLATIONS:
            problems.append(f"ablation '{self.ablation}' must be one of {', '.join(ABLATIONS)}")
        if min(self.n_instances, self.train_steps, self.batch_size, self.n_bootstrap, self.log_every) < 1 or self.n_samples < 2:
            problems.append("n_instances, train_steps, batch_size, n_bootstrap, log_every must be ≥ 1 and n_samples ≥ 2")
        if problems:
            raise InputError("separability.exp_d: " + "; ".join(problems) + ".")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- model and data ---------------------------------------------------------------------------


class ToyModel(nn.Module):
    """`n_instances` independent toy models evaluated side by side: ``h = ReLU(W x)`` (``relu``, a
    privileged hidden basis) or ``h = W x`` (``linear``), then ``x' = ReLU(Wᵀ h + b)``.

    Inputs and outputs are [batch, instance, feature]; the hidden layer is [batch, instance, unit]
    and passes through `hook` (named ``hook_hidden``) when one is given."""

    def __init__(self, n_instances: int, n_features: int, n_hidden: int, generator: torch.Generator | None = None,
                 hidden_activation: str = "relu"):
        super().__init__()
        if hidden_activation not in HIDDEN_ACTIVATIONS:
            raise InputError(f"hidden_activation '{hidden_activation}' is not one of {', '.join(HIDDEN_ACTIVATIONS)}.")
        self.hidden_activation = hidden_activation
        self.W = nn.Parameter(torch.empty(n_instances, n_hidden, n_features))
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))
        for weight in self.W.data:  # Xavier normal per instance, as Elhage et al. initialise W
            nn.init.xavier_normal_(weight, generator=generator)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(instances, hidden units, features)."""
        return tuple(self.W.shape)  # type: ignore[return-value]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("imn,bin->bim", self.W, x)
        return torch.relu(h) if self.hidden_activation == "relu" else h

    def forward(self, x: torch.Tensor, hook: Hook | None = None) -> torch.Tensor:
        h = self.hidden(x)
        if hook is not None:
            h = hook(h)
        return torch.relu(torch.einsum("imn,bim->bin", self.W, h) + self.b)


def ablate_unit(instance: int, unit: int, value: float | torch.Tensor = 0.0) -> Hook:
    """A ``hook_hidden`` function that sets hidden unit `unit` of instance `instance` to `value`
    (a number, or a tensor broadcast over the batch) and leaves every other activation as it is."""

    def hook(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        h[:, instance, unit] = value
        return h

    hook.__name__ = f"{HOOK}_ablate_i{instance}_u{unit}"
    return hook


def importance(n_features: int, decay: float) -> torch.Tensor:
    """Feature importances ``decay**i``, i = 0 … n_features − 1."""
    return decay ** torch.arange(n_features, dtype=torch.float32)


def sample_features(
    batch: int, n_instances: int, n_features: int, probability: float, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sparse features [batch, instance, feature]: uniform on [0, 1] with `probability`, else 0."""
    values = torch.rand(batch, n_instances, n_features, generator=generator)
    present = torch.rand(batch, n_instances, n_features, generator=generator) < probability
    return values * present


def weighted_mse(out: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Importance-weighted squared error, averaged over batch and features: one loss per instance."""
    return (weights * (x - out) ** 2).mean(dim=(0, 2))


# --- the precondition: superposition -----------------------------------------------------------


@torch.no_grad()
def superposition_measures(W: torch.Tensor, threshold: float = REPRESENTED_NORM) -> dict[str, Any]:
    """Elhage et al.'s measures per instance of W [instance, m, n]: the features represented
    (‖W_i‖ > `threshold`), their count against m, and each represented feature's interference
    ``Σ_{j≠i} (Ŵ_i · W_j)²`` (0 for features kept orthogonally, large when features share
    dimensions). An instance is in superposition when it represents more features than it has
    hidden dimensions and their mean interference is above 0; ``holds`` when every instance is."""
    W = W.detach().double()
    n_instances, n_hidden, _ = W.shape
    instances = []
    for i in range(n_instances):
        norms = W[i].norm(dim=0)
        represented = (norms > threshold).nonzero().flatten().tolist()
        unit = W[i] / norms.clamp_min(1e-12)
        overlaps = (unit.T @ W[i]) ** 2  # [n, n]: (Ŵ_a · W_b)²
        overlaps.fill_diagonal_(0.0)
        interference = overlaps.sum(1)
        mean_interference = float(interference[represented].mean()) if represented else 0.0
        instances.append({
            "n_represented": len(represented), "represented": represented,
            "mean_interference": mean_interference,
            "interference": [float(v) for v in interference],
            "in_superposition": len(represented) > n_hidden and mean_interference > 1e-3,
        })
    n_in = sum(inst["in_superposition"] for inst in instances)
    return {
        "n_hidden": n_hidden, "norm_threshold": threshold, "instances": instances,
        "n_represented": [inst["n_represented"] for inst in instances],
        "n_instances_in_superposition": n_in, "holds": n_in == n_instances,
    }


# --- observables during training ----------------------------------------------------------------


@torch.no_grad()
def model_observables(model: ToyModel, probe: torch.Tensor) -> dict[str, float]:
    """What is logged per step besides the loss (means over instances):

    - ``W_norm``: Frobenius norm of W (the amplitude of the weights),
    - ``features_per_dim``: ``‖W‖_F² / m``, Elhage's measure of superposition (≈ 1 when the
      model keeps m features orthogonally, above 1 when it stores more features than dimensions),
    - ``b_mean``: mean output bias (turns negative to filter interference in superposition),
    - ``A_activation_L0`` and ``sigma_sq_L0``: mean norm and σ² of the hidden vector on the probe batch."""
    n_instances, n_hidden, _ = model.shape
    h = model.hidden(probe)
    norms = model.W.detach().double().flatten(1).norm(dim=1)
    return {
        "W_norm": float(norms.mean()),
        "features_per_dim": float((norms**2).mean() / n_hidden),
        "b_mean": float(model.b.detach().mean()),
        "A_activation_L0": a_activation(h),
        "sigma_sq_L0": float(np.mean([sigma_sq(h[:, i]) for i in range(n_instances)])),
    }


def train(
    model: ToyModel, cfg: SuperpositionConfig, generator: torch.Generator, log: AuditLog | None = None, desc: str = "exp_d",
) -> dict[str, Any]:
    """AdamW on the importance-weighted MSE (summed over instances, as Elhage et al.), fresh
    batches every step from `generator`; logs loss and `model_observables` on a fixed probe batch."""
    device = model.W.device
    weights = importance(cfg.n_features, cfg.importance_decay).to(device)
    probe = sample_features(min(cfg.n_samples, 1024), cfg.n_instances, cfg.n_features, cfg.feature_probability, generator).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = LogSchedule(cfg.train_steps, dense_every=max(1, cfg.log_every // 10), sparse_every=cfg.log_every,
                           dense_until=min(cfg.train_steps, 10 * cfg.log_every), band=None)
    losses = torch.zeros(cfg.n_instances)
    for step in tqdm(range(cfg.train_steps), desc=desc, file=sys.stderr, mininterval=5):
        x = sample_features(cfg.batch_size, cfg.n_instances, cfg.n_features, cfg.feature_probability, generator).to(device)
        losses = weighted_mse(model(x), x, weights)
        if log is not None and schedule.due(step):  # the weights that gave this step's loss, before the update
            log.record(step, loss=float(losses.detach().mean()), loss_max_instance=float(losses.detach().max()),
                       **model_observables(model, probe))
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
    return {"final_loss": float(losses.detach().mean()), "final_loss_per_instance": [float(v) for v in losses.detach()],
            **model_observables(model, probe)}


# --- suppressor identification ------------------------------------------------------------------


def output_variance(out: torch.Tensor) -> torch.Tensor:
    """σ² of each instance's output [batch, instance, feature]: per-feature variance about the
    batch mean, averaged over the features (float64, one value per instance)."""
    out = out.detach().double()
    return (out - out.mean(0, keepdim=True)).pow(2).mean(dim=(0, 2))


@torch.no_grad()
def ablation_ratios(model: ToyModel, x: torch.Tensor, ablation: str = "zero") -> torch.Tensor:
    """[instance, unit]: σ² of the instance's output with that unit ablated / σ² without (NaN where
    the baseline output has no variance at all). Only the ablated unit's own instance is compared:
    the instances are independent models."""
    if ablation not in ABLATIONS:
        raise InputError(f"ablation '{ablation}' is not one of {', '.join(ABLATIONS)}.")
    n_instances, n_hidden, _ = model.shape
    baseline = output_variance(model(x)).cpu()
    means = model.hidden(x).mean(0)
    ratios = torch.full((n_instances, n_hidden), float("nan"), dtype=torch.float64)
    for i in range(n_instances):
        for j in range(n_hidden):
            value = 0.0 if ablation == "zero" else means[i, j]
            ablated = output_variance(model(x, ablate_unit(i, j, value)))[i].cpu()
            if baseline[i] > 0:
                ratios[i, j] = ablated / baseline[i]
    return ratios


def suppressor_mask(ratios: torch.Tensor, threshold: float) -> torch.Tensor:
    """True where the ablation raised the downstream variance by more than `threshold` (NaN: False)."""
    return torch.nan_to_num(ratios, nan=0.0) > threshold


@torch.no_grad()
def unit_variances(model: ToyModel, x: torch.Tensor) -> torch.Tensor:
    """[instance, unit]: variance of each hidden activation h_j over the batch (population variance)."""
    return model.hidden(x).double().var(dim=0, unbiased=False)


# --- bootstrap comparison -----------------------------------------------------------------------


def ratio_of_means(first: np.ndarray, second: np.ndarray, axis: int = -1) -> np.ndarray:
    """mean(first) / mean(second) along `axis` (vectorised for scipy.stats.bootstrap)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(first, axis=axis) / np.mean(second, axis=axis)


def compare_variances(suppressors: Sequence[float], clean: Sequence[float], n_resamples: int, seed: int) -> dict[str, Any]:
    """Means of the two groups, their ratio (suppressor / clean) and its bootstrap interval; the
    ratio is None when a group is empty (or the clean mean is 0), the interval when a group has
    fewer than two units, and `note` says why."""
    result: dict[str, Any] = {
        "n_suppressors": len(suppressors), "n_clean": len(clean),
        "suppressor_variance_mean": float(np.mean(suppressors)) if len(suppressors) else None,
        "clean_variance_mean": float(np.mean(clean)) if len(clean) else None,
        "ratio": None, "ci95": None, "note": None,
    }
    if not len(suppressors) or not len(clean):
        result["note"] = f"no {'suppressor' if not len(suppressors) else 'clean'} unit: the ratio is undefined"
        return result
    if result["clean_variance_mean"] <= 0:
        result["note"] = "the clean units have zero variance: the ratio is undefined"
        return result
    result["ratio"] = result["suppressor_variance_mean"] / result["clean_variance_mean"]
    interval = bootstrap_interval((suppressors, clean), ratio_of_means, n_resamples, CONFIDENCE, seed, method="BCa")
    if interval is None:
        result["note"] = "fewer than two units in a group (or degenerate values): no bootstrap interval"
    else:
        result["ci95"] = list(interval)
    return result


# --- the experiment -----------------------------------------------------------------------------


def run_superposition(
    cfg: SuperpositionConfig, generator: torch.Generator, seed: int, device: torch.device | str = "cpu",
    log: AuditLog | None = None,
) -> dict[str, Any]:
    """Train the toy models, find suppressors by ablation on one batch, measure the units'
    activation variances on another, and compare the two groups. Returns the log's summary."""
    model = ToyModel(cfg.n_instances, cfg.n_features, cfg.n_hidden, generator, cfg.hidden_activation).to(device)
    if log is not None:
        log.checkpoint(0, model.state_dict())
    training = train(model, cfg, generator, log)
    if log is not None:
        log.checkpoint(cfg.train_steps, model.state_dict())
    model.eval()
    identification, measurement = (
        sample_features(cfg.n_samples, cfg.n_instances, cfg.n_features, cfg.feature_probability, generator).to(device) for _ in range(2)
    )
    ratios = ablation_ratios(model, identification, cfg.ablation)
    is_suppressor = suppressor_mask(ratios, cfg.suppressor_threshold)
    variances = unit_variances(model, measurement)
    with torch.no_grad():
        weights = importance(cfg.n_features, cfg.importance_decay).to(device)
        eval_loss = weighted_mse(model(measurement), measurement, weights)
    training.update(eval_loss=float(eval_loss.mean()), eval_loss_per_instance=[float(v) for v in eval_loss])
    units = [
        {"instance": i, "unit": j, "role": _role(ratios[i, j], bool(is_suppressor[i, j])),
         "ablation_variance_ratio": _number(ratios[i, j]), "activation_variance": float(variances[i, j])}
        for i in range(cfg.n_instances) for j in range(cfg.n_hidden)
    ]
    supp = [u["activation_variance"] for u in units if u["role"] == "suppressor"]
    clean = [u["activation_variance"] for u in units if u["role"] == "clean"]
    comparison = compare_variances(supp, clean, cfg.n_bootstrap, seed)
    finite = ratios[torch.isfinite(ratios)]
    return {
        **comparison,
        "superposition": superposition_measures(model.W),
        "hidden_activation": cfg.hidden_activation,
        "privileged_basis": cfg.hidden_activation == "relu",
        "suppressor_variances": supp,
        "clean_variances": clean,
        "n_units": len(units),
        "units": units,
        "ablation_ratio_range": [float(finite.min()), float(finite.max())] if finite.numel() else None,
        "definition": DEFINITION.format(model=MODELS[cfg.hidden_activation],
                                        ablation="0" if cfg.ablation == "zero" else "its batch mean", threshold=cfg.suppressor_threshold),
        "bootstrap": {"method": "BCa", "resampled": "units, each group independently", "n_resamples": cfg.n_bootstrap,
                      "confidence": CONFIDENCE, "seed": seed, "statistic": "mean(suppressor Var h_j) / mean(clean Var h_j)"},
        "training": training,
        "settings": cfg.as_dict(),
    }


def _role(ratio: torch.Tensor, suppressor: bool) -> str:
    """'suppressor', 'clean', or 'undetermined' where the instance's output has no variance to compare."""
    return "undetermined" if not torch.isfinite(ratio) else "suppressor" if suppressor else "clean"


def _number(value: torch.Tensor) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
