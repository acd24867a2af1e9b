"""Image classifiers, their permutation specs, and one checkpoint format for all of them."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from weightlab.errors import InputError
from weightlab.io import atomic_path
from weightlab.permutations import PermutationSpec, conv, dense, norm


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # one group: statistics over all channels, so it permutes cleanly
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise InputError(f"unknown norm '{kind}'; choose batch, layer or none.")


class ConvNet(nn.Module):
    """A VGG-style ConvNet: 5 conv-norm-ReLU blocks (widths w, w, 2w, 2w, 4w), max-pooling after
    the 2nd, 4th and 5th, global average pooling, then two dense layers."""

    POOL_AFTER = (1, 3, 4)

    def __init__(self, width: int = 16, hidden: int = 128, num_classes: int = 10, norm: str = "batch") -> None:
        super().__init__()
        self.norm_kind = norm
        self.channels = [width, width, 2 * width, 2 * width, 4 * width]
        ins = [3] + self.channels[:-1]
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 3, padding=1, bias=norm == "none") for i, o in zip(ins, self.channels)
        )
        self.norms = nn.ModuleList(_norm_layer(norm, c) for c in self.channels)
        self.fc1 = nn.Linear(self.channels[-1], hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv_layer, norm_layer) in enumerate(zip(self.convs, self.norms)):
            x = torch.relu(norm_layer(conv_layer(x)))
            if i in self.POOL_AFTER:
                x = nn.functional.max_pool2d(x, 2)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc2(torch.relu(self.fc1(x)))

    def permutation_spec(self) -> PermutationSpec:
        axes: dict[str, Any] = {}
        previous = None
        for i in range(len(self.channels)):
            perm = f"P_conv{i}"
            axes.update(conv(f"convs.{i}", previous, perm, bias=self.norm_kind == "none"))
            if self.norm_kind != "none":
                axes.update(norm(f"norms.{i}", perm, running_stats=self.norm_kind == "batch"))
            previous = perm
        axes.update(dense("fc1", previous, "P_fc1"))
        axes.update(dense("fc2", "P_fc1", None))
        return PermutationSpec(axes)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"convnet": ConvNet}
# Architectures whose module needs another environment (transformer_lens: envs/lm.yaml), imported
# only when such a checkpoint is built: "module:function".
EXTERNAL_ARCHITECTURES = {"toy_transformer": "weightlab.separability.toy:build_toy_transformer"}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    if arch in EXTERNAL_ARCHITECTURES:
        import importlib

        module, function = EXTERNAL_ARCHITECTURES[arch].split(":")
        return getattr(importlib.import_module(module), function)(**kwargs)
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture '{arch}'; known: {sorted({*ARCHITECTURES, *EXTERNAL_ARCHITECTURES})}.")
    return ARCHITECTURES[arch](**kwargs)


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


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild any weightlab checkpoint: returns the model (eval mode) and the stored payload."""
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
        model = build_model(payload["arch"], **payload["arch_kwargs"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, InputError) as err:
        detail = " ".join(str(err).split())[:200]
        raise InputError(f"checkpoint {path} does not rebuild its model ({type(err).__name__}: {detail}); {fix}.") from err
    return model.to(device).to(memory_format=torch.channels_last).eval(), payload


class AlexNet(nn.Module):
    """AlexNet for 3x32x32 inputs, the CIFAR-10 variant of provable-repair work: 5 conv-ReLU layers
    (the first with stride 2; max-pooling after the 1st, 2nd and 5th), then `classifier`, three
    linear layers fc1, fc2, fc3 with ReLUs between. Layer-wise repair edits the classifier."""

    def __init__(
        self, channels: tuple[int, ...] | list[int] = (64, 192, 384, 256, 256),
        hidden: tuple[int, ...] | list[int] = (4096, 4096), num_classes: int = 10, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) != 5 or len(hidden) != 2:
            raise InputError(f"alexnet needs 5 conv widths and 2 hidden widths, got channels={list(channels)}, hidden={list(hidden)}.")
        c1, c2, c3, c4, c5 = channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(OrderedDict([
            ("drop1", nn.Dropout(dropout)), ("fc1", nn.Linear(c5 * 2 * 2, hidden[0])), ("relu1", nn.ReLU()),
            ("drop2", nn.Dropout(dropout)), ("fc2", nn.Linear(hidden[0], hidden[1])), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(hidden[1], num_classes)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


ARCHITECTURES["alexnet"] = AlexNet
