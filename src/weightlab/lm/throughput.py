"""How close a language-model rule comes to the machine's limit: achieved GFLOP/s against a
measured matrix-multiply peak.

A transformer's work is almost all matrix multiplies: a forward pass over T tokens costs
2·N·T floating-point operations for the N weights of its linear layers (the tied unembedding
included; an embedding lookup is no multiply), plus the attention scores and their weighted sum,
2·L·S·d per token for a causal model with L layers, width d and sequence length S (4·L·S·d
halved by the mask). A backward pass costs twice the forward when every weight is trained (one
multiply for the activations' gradient, one for the weights'), and about the forward again
when the weights are frozen and only small adapters train (LoRA: the activations' gradient
still flows through every frozen layer). These are the usual estimates (Kaplan et al. 2020,
appendix; Chinchilla's 6·N·T for training); the measured peak is what the same process's
threads reach on a large float32 (or bfloat16) multiply, so the fraction says how far a rule is
from what this CPU can do, not from a datasheet.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping, Sequence

import torch

Step = Literal["forward", "full", "adapter"]
# backward / forward cost: weights' and activations' gradients (full), activations' only (adapter)
_BACKWARD_FACTOR = {"forward": 0.0, "full": 2.0, "adapter": 1.0}


def linear_weights(model: torch.nn.Module) -> int:
    """The weights a forward pass multiplies: every nn.Linear's weight (adapters included) and
    every transformers Conv1D's (GPT-2 writes its linear layers as those)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D")


def step_flops(weights: int, tokens: int, step: Step = "forward", n_layers: int = 0, d_model: int = 0, seq_len: int = 0) -> float:
    """Floating-point operations of one pass over `tokens` tokens (see the module docstring).

    `step`: "forward" (evaluation, generation), "full" (every weight trained: 3x forward),
    "adapter" (frozen weights, adapters trained: 2x forward). The attention term needs the
    model's layers, width and sequence length; left at 0 it is omitted.
    """
    if step not in _BACKWARD_FACTOR:
        raise ValueError(f"step must be one of {sorted(_BACKWARD_FACTOR)}, not {step!r}")
    forward = 2.0 * weights * tokens + 2.0 * n_layers * seq_len * d_model * tokens
    return forward * (1.0 + _BACKWARD_FACTOR[step])


def matmul_peak(dtype: torch.dtype = torch.float32, size: tuple[int, int, int] = (1024, 1024, 1024), seconds: float = 0.3,
                device: str | torch.device = "cpu") -> float:
    """GFLOP/s of the best timed batch of (m x k) @ (k x n) multiplies on `device`, with the
    threads torch has now (a rule calls it after `runtime.configure`)."""
    m, k, n = size
    a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b  # warm-up: the first call allocates and picks a kernel
    sync()
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        elapsed = time.perf_counter() - start
        best = max(best, 4 * 2.0 * m * k * n / elapsed / 1e9)
        if time.perf_counter() > deadline:
            return best


@dataclass(frozen=True)
class Throughput:
    """Achieved rate of a rule's main loop against the measured peak of its dtype."""

    flops: float
    seconds: float
    gflops: float
    peak_gflops: float
    fraction_of_peak: float
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.gflops:.1f} GFLOP/s achieved ({self.flops / 1e12:.2f} TFLOP in {self.seconds:.1f} s), "
                f"{100 * self.fraction_of_peak:.0f}% of this CPU's measured {self.dtype} matmul peak {self.peak_gflops:.0f} GFLOP/s")


def throughput(flops: float, seconds: float, peak_gflops: float, dtype: torch.dtype | str = torch.float32) -> Throughput:
    """The record of `flops` done in `seconds`, against a peak of `peak_gflops` GFLOP/s."""
    if seconds <= 0 or peak_gflops <= 0:
        raise ValueError("seconds and peak_gflops must be positive")
    gflops = flops / seconds / 1e9
    name = str(dtype).removeprefix("torch.")
    return Throughput(flops=float(flops), seconds=float(seconds), gflops=gflops, peak_gflops=float(peak_gflops),
                      fraction_of_peak=gflops / peak_gflops, dtype=name)


def from_history(weights: int, history: Sequence[Mapping[str, Any]], step: Step, peak_gflops: float,
                 dtype: torch.dtype | str = torch.float32) -> Throughput:
    """The rate of a training loop whose per-step records carry `tokens` (the batch's, padding
    included: the multiplies run on it) and `seconds`; the attention-score term is left out."""
    tokens = sum(int(record["tokens"]) for record in history)
    seconds = sum(float(record["seconds"]) for record in history)
    return throughput(step_flops(weights, tokens, step), seconds, peak_gflops, dtype)


def training_rate(model: torch.nn.Module, history: Sequence[Mapping[str, Any]], step: Step, precision: str = "fp32",
                  device: str | torch.device = "cpu") -> Throughput:
    """A training loop's rate (`from_history`) over the linear layers of `model`, against this
    machine's measured peak in the loop's precision ('fp32' or 'bf16', weightlab.lm.precision)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return from_history(linear_weights(model), history, step, matmul_peak(dtype, device=device), dtype)
