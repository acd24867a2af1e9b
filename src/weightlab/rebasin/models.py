"""Re-Basin's image classifier: a VGG-style ConvNet and its permutation spec."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from weightlab.errors import InputError
from weightlab.rebasin.permutations import PermutationSpec, conv, dense, norm


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


# The architectures a Re-Basin checkpoint may name (config: rebasin.model.arch), for
# weightlab.checkpoints.build_model and load_checkpoint.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"convnet": ConvNet}
