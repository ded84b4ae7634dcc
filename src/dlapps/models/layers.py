"""Small building blocks shared by models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Standardise inputs per channel inside the model, so models take images in [0, 1].

    Attacks and explanations then work in pixel space without knowing a dataset's statistics. The buffers
    are not persistent: state dicts stay compatible with weights trained with external normalisation.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.enabled = mean is not None
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean or [0.0]).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std or [1.0]).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.enabled else x

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}" if self.enabled else "identity"
