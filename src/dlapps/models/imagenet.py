"""ImageNet classifiers from torchvision (``mobilenet_v2``, ``resnet18``) and ImageNet's class names."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn
from torchvision import models as tvm

from dlapps.models.registry import MODELS, torchvision_model


@MODELS.register("mobilenet_v2")
def mobilenet_v2(
    *, num_classes: int, in_shape: tuple[int, int, int], mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:  # fmt: skip
    return torchvision_model("mobilenet_v2", num_classes=num_classes, mean=mean, std=std)


@MODELS.register("resnet18")
def resnet18(
    *, num_classes: int, in_shape: tuple[int, int, int], mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:  # fmt: skip
    return torchvision_model("resnet18", num_classes=num_classes, mean=mean, std=std)


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in torchvision's order (shipped with torchvision, no download)."""
    return tuple(tvm.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
