"""In-memory image datasets: uint8 images (N, C, H, W) and int64 labels, kept as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class ImageArrays:
    """A whole split in memory. ``source`` says where it was read from (for reports and errors)."""

    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def take(self, indices: torch.Tensor) -> ImageArrays:
        return replace(self, images=self.images[indices], labels=self.labels[indices])

    def subset(self, size: int | None, seed: int = 0) -> ImageArrays:
        """A seeded random subset of ``size`` samples (the whole split when ``size`` is None or too big).

        Random rather than the first ``size`` samples because some archives are sorted by class.
        """
        if size is None or size >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        return self.take(torch.randperm(len(self), generator=generator)[:size])

    def to(self, device: torch.device | str) -> ImageArrays:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))
