"""The arithmetic precision of the language-model rules: a config switch ``auto`` / ``fp32`` /
``bf16``.

``bf16`` runs forward (and backward) passes under bfloat16 autocast: matrix products in bfloat16,
parameters, optimiser state and reductions (losses, softmax) in float32, so trained adapters stay
float32. ``auto`` chooses ``bf16`` where the hardware multiplies bfloat16 natively (a CUDA device
that supports it, or a CPU whose flags include ``avx512_bf16`` or ``amx_bf16``) and ``fp32``
elsewhere. Torch is imported only when a context is made, so the workflow may import this module
while parsing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ContextManager

from weightlab.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first processor in /proc/cpuinfo (empty where the file does not exist)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def resolve_precision(setting: str, device: str = "cpu", flags: frozenset[str] | None = None) -> str:
    """``fp32`` or ``bf16`` for a config value of `PRECISIONS` on `device` ('cpu', 'cuda', 'cuda:0');
    `flags` are the CPU's (read from /proc/cpuinfo when None)."""
    if setting not in PRECISIONS:
        raise InputError(f"unknown precision {setting!r}; choose from {PRECISIONS}.")
    if setting != "auto":
        return setting
    if str(device).startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    flags = cpu_flags() if flags is None else flags
    return "bf16" if any(flag in flags for flag in BF16_CPU_FLAGS) else "fp32"


def autocast(precision: str, device: Any = "cpu") -> ContextManager[Any]:
    """A context running its block at `precision` (``fp32``: nothing changes; ``bf16``: bfloat16
    autocast on the device's type). ``auto`` is resolved first."""
    resolved = resolve_precision(precision, str(device))
    if resolved == "fp32":
        return contextlib.nullcontext()
    import torch

    device_type = torch.device(device).type if not isinstance(device, torch.device) else device.type
    return torch.autocast(device_type, dtype=torch.bfloat16)
