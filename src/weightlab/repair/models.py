"""The repair study's image classifier: AlexNet for 3x32x32 inputs."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from weightlab.errors import InputError


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


# The architectures a repair checkpoint may name (config: repair.model.arch), for
# weightlab.checkpoints.build_model and load_checkpoint.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"alexnet": AlexNet}
