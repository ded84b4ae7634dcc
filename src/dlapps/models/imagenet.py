"""ImageNet classifiers from torchvision, taking images in [0, 1] like every dlapps model.

Each is torchvision's own architecture with a :class:`Normalize` in front, so torchvision-layout weights
load strictly and layer names are torchvision's (``features.18`` for MobileNetV2, ``layer4`` for ResNet-18).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import models as tvm

from dlapps.models.layers import Normalize
from dlapps.models.registry import register_model


class MobileNetV2(tvm.MobileNetV2):
    def __init__(self, num_classes: int = 1000, mean=None, std=None) -> None:
        super().__init__(num_classes=num_classes)
        self.normalize = Normalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))


class ResNet18(tvm.ResNet):
    def __init__(self, num_classes: int = 1000, mean=None, std=None) -> None:
        super().__init__(tvm.resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.normalize = Normalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))


@register_model("mobilenet_v2")
def mobilenet_v2(
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> MobileNetV2:
    return MobileNetV2(num_classes, mean, std)


@register_model("resnet18")
def resnet18(
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ResNet18:
    return ResNet18(num_classes, mean, std)


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet class names in torchvision's order (shipped with torchvision, no download)."""
    return list(tvm.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
