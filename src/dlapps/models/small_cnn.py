"""The course write-up's small custom CNN for CIFAR-10 (about 64% test accuracy there).

Two ``conv 3x3 + ReLU + max-pool`` stages (32 and 64 channels) and a two-layer classifier: a deliberately
weak baseline beside the CIFAR ResNets in the OOD and adversarial studies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlapps.models.layers import Normalize
from dlapps.models.registry import MODELS


class SmallCNN(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_shape: tuple[int, int, int] = (3, 32, 32),
        *,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(c, channels[0], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[1] * (h // 4) * (w // 4), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@MODELS.register("small_cnn")
def small_cnn(
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    channels: tuple[int, int] = (32, 64),
    hidden: int = 128,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SmallCNN:
    return SmallCNN(num_classes, in_shape, channels=channels, hidden=hidden, mean=mean, std=std)
