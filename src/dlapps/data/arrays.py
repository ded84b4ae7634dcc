"""In-memory image datasets: uint8 images (N, C, H, W) and int64 labels, kept as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


def subset_indices(total: int, size: int | None, seed: int = 0) -> torch.Tensor | None:
    """The indices of a seeded random subset of ``size`` of ``total`` samples; None for all of them."""
    if size is None or size >= total:
        return None
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:size]


def one_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the first sample of each class (in the given order), then of the others in order, ``count`` in
    all: a grid of examples that shows every class it can."""
    firsts = [int((labels == c).nonzero()[0]) for c in labels.unique().tolist()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:count])


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
        chosen = subset_indices(len(self), size, seed)
        return self if chosen is None else self.take(chosen)

    def to(self, device: torch.device | str) -> ImageArrays:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the images scaled to [0, 1], over the whole split."""
        total = torch.zeros(2, self.images.shape[1], dtype=torch.float64)
        for chunk in self.images.split(2048):
            values = chunk.transpose(0, 1).flatten(1).double().cpu() / 255.0
            total += torch.stack([values.sum(1), values.square().sum(1)])
        count = self.images[:, 0].numel()
        mean = total[0] / count
        std = (total[1] / count - mean.square()).clamp(min=0).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())

    def relabel(self, outputs: tuple[int, ...], names: tuple[str, ...]) -> ImageArrays:
        """Labels moved into another label space: class ``c`` becomes ``outputs[c]`` of the classes ``names``
        (the outputs of a model trained on a larger label set, e.g. ImageNet's for Imagenette)."""
        mapping = torch.tensor(outputs, dtype=torch.int64, device=self.labels.device)
        return replace(self, labels=mapping[self.labels], classes=tuple(names))
