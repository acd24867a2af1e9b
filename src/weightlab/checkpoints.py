"""One checkpoint format for every model of every study.

A checkpoint stores the state dict and what rebuilds the model: an architecture name and its
keyword arguments. The module knows no architecture: a caller passes the ones it may load, as a
mapping from name to builder that it imports from the package defining them (each study's
``ARCHITECTURES``), so the import is visible to the library digest of the rule that loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from weightlab.errors import InputError
from weightlab.io import atomic_path

Architectures = Mapping[str, Callable[..., nn.Module]]


def build_model(architectures: Architectures, arch: str, **kwargs: Any) -> nn.Module:
    """The model `arch` of `architectures`, built with `kwargs`."""
    if arch not in architectures:
        raise InputError(f"unknown architecture '{arch}'; known: {sorted(architectures)}.")
    return architectures[arch](**kwargs)


def save_checkpoint(
    path: str | Path, model: nn.Module, arch: str, arch_kwargs: dict[str, Any], metadata: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """A torch file with the state dict and what rebuilds the model (architecture and arguments)."""
    state = state_dict if state_dict is not None else model.state_dict()
    payload = {
        "format": "weightlab-checkpoint-1",
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
        "metadata": metadata or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: str | Path, architectures: Architectures, device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a weightlab checkpoint whose architecture is one of `architectures`: returns the
    model (eval mode) and the stored payload."""
    fix = "delete it and re-run, Snakemake rebuilds it"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise InputError(f"checkpoint {path} does not exist; run the rule that trains it first.") from err
    except Exception as err:  # truncated or damaged: torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise InputError(f"checkpoint {path} is damaged or truncated ({type(err).__name__}); {fix}.") from err
    if not isinstance(payload, dict) or payload.get("format") != "weightlab-checkpoint-1":
        raise InputError(f"{path} is not a weightlab checkpoint (no 'format: weightlab-checkpoint-1'); {fix}.")
    try:
        model = build_model(architectures, payload["arch"], **payload["arch_kwargs"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, InputError) as err:
        detail = " ".join(str(err).split())[:200]
        raise InputError(f"checkpoint {path} does not rebuild its model ({type(err).__name__}: {detail}); {fix}.") from err
    return model.to(device).to(memory_format=torch.channels_last).eval(), payload
