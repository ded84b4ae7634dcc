"""Plain and residual multi-layer perceptrons for the residual-connection study.

**Depth** is the number of hidden ``width -> width`` linear layers, each followed by a ReLU. Both models
also have an input layer (``in_features -> width``, ReLU) and a linear head (``width -> num_classes``), so an
``MLP`` and a ``ResidualMLP`` of the same depth and width have exactly the same parameters; the residual
one only adds identity shortcuts around groups of ``layers_per_block`` hidden layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models.layers import Normalize
from dlapps.models.registry import MODELS


def _check(width: int, depth: int, layers_per_block: int = 1) -> None:
    if width <= 0:
        raise ConfigError(f"width must be positive, got {width}")
    if depth <= 0:
        raise ConfigError(f"depth must be positive, got {depth}")
    if layers_per_block <= 0 or depth % layers_per_block:
        raise ConfigError(f"depth {depth} must be a positive multiple of layers_per_block {layers_per_block}")


class MLP(nn.Module):
    """Input layer, ``depth`` hidden ``Linear + ReLU`` layers, linear head. Accepts images (flattened)."""

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        _check(width, depth)
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU())
        self.hidden = nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.stem(self.normalize(x))))


class ResidualBlock(nn.Module):
    """``relu(x + F(x))`` where ``F`` is ``layers`` linear layers with ReLUs between them (He et al. 2016)."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for i in range(layers):
            modules.append(nn.Linear(width, width))
            if i < layers - 1:
                modules.append(nn.ReLU())
        self.residual = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.residual(x))


class ResidualMLP(nn.Module):
    """Same layers as :class:`MLP` of equal depth, grouped into ``depth // layers_per_block`` residual blocks."""

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        num_classes: int,
        layers_per_block: int = 1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        _check(width, depth, layers_per_block)
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU())
        self.hidden = nn.Sequential(*(ResidualBlock(width, layers_per_block) for _ in range(depth // layers_per_block)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.stem(self.normalize(x))))


@MODELS.register("mlp")
def mlp(
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    width: int = 16,
    depth: int = 2,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> MLP:
    return MLP(math.prod(in_shape), width, depth, num_classes, mean=mean, std=std)


@MODELS.register("residual_mlp")
def residual_mlp(
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    width: int = 16,
    depth: int = 2,
    layers_per_block: int = 1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ResidualMLP:
    return ResidualMLP(math.prod(in_shape), width, depth, num_classes, layers_per_block, mean=mean, std=std)
