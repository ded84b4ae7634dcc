"""CIFAR ResNets as in He et al. 2016, section 4.2, with skip connections switchable off.

Three stages of ``blocks`` basic blocks (16, 32, 64 channels; stride 2 between stages), global average
pooling and one linear layer: ``6 * blocks + 2`` weight layers (ResNet-20/32/44/56 for 3/5/7/9 blocks).
Shortcuts are option A (identity; stride-2 subsampling with zero-padded channels where the shape changes),
so a net with ``skip=False`` — He et al.'s "plain" counterpart — has exactly the same parameters.
Module names follow the public ``pytorch_resnet_cifar10`` checkpoints, so their weights load directly.
The GAP + linear head makes these nets ready for class activation maps (features: ``layer3``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models.layers import Normalize
from dlapps.models.registry import MODELS


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the new channels (option A)."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers; ``relu(F(x) + shortcut(x))`` with skip, ``relu(F(x))`` without."""

    def __init__(self, in_channels: int, channels: int, stride: int, skip: bool) -> None:
        super().__init__()
        self.skip = skip
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        changes_shape = stride != 1 or in_channels != channels
        self.shortcut = ShortcutA(channels - in_channels) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.skip:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(
        self,
        blocks: int = 3,
        num_classes: int = 10,
        *,
        skip: bool = True,
        widths: Sequence[int] = (16, 32, 64),
        in_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if blocks <= 0:
            raise ConfigError(f"blocks must be positive, got {blocks}")
        if len(widths) != 3 or any(w <= 0 for w in widths) or list(widths) != sorted(widths):
            raise ConfigError(f"widths must be three positive, non-decreasing channel counts, got {tuple(widths)}")
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        previous = widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers = [
                BasicBlock(previous if b == 0 else width, width, stride if b == 0 else 1, skip) for b in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            previous = width
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps (input of the GAP + linear head)."""
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.features(x)), 1))


Stats = Sequence[float] | None  # a normalisation's mean or std (None: the model does not normalise)


@MODELS.register("resnet20")
def resnet20(
    *, num_classes: int, in_shape: tuple[int, int, int], skip: bool = True, mean: Stats = None, std: Stats = None
):
    """ResNet-20 for CIFAR (option A shortcuts; ``skip=False`` for the plain net)."""
    return CifarResNet(3, num_classes, skip=skip, in_channels=in_shape[0], mean=mean, std=std)


@MODELS.register("resnet32")
def resnet32(
    *, num_classes: int, in_shape: tuple[int, int, int], skip: bool = True, mean: Stats = None, std: Stats = None
):
    """ResNet-32 for CIFAR."""
    return CifarResNet(5, num_classes, skip=skip, in_channels=in_shape[0], mean=mean, std=std)


@MODELS.register("resnet44")
def resnet44(
    *, num_classes: int, in_shape: tuple[int, int, int], skip: bool = True, mean: Stats = None, std: Stats = None
):
    """ResNet-44 for CIFAR."""
    return CifarResNet(7, num_classes, skip=skip, in_channels=in_shape[0], mean=mean, std=std)


@MODELS.register("resnet56")
def resnet56(
    *, num_classes: int, in_shape: tuple[int, int, int], skip: bool = True, mean: Stats = None, std: Stats = None
):
    """ResNet-56 for CIFAR."""
    return CifarResNet(9, num_classes, skip=skip, in_channels=in_shape[0], mean=mean, std=std)


@MODELS.register("cifar_resnet")
def cifar_resnet(
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    blocks: int = 3,
    skip: bool = True,
    widths: tuple[int, ...] = (16, 32, 64),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> CifarResNet:
    """Any depth and width: ``blocks`` per stage, ``widths`` channels per stage."""
    return CifarResNet(blocks, num_classes, skip=skip, widths=widths, in_channels=in_shape[0], mean=mean, std=std)
