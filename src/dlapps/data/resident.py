"""Device-resident batching for datasets that fit in memory (MNIST, CIFAR).

The uint8 images sit on the device once; each epoch shuffles indices with a generator seeded by
``(seed, epoch)``, and cropping, flipping and normalisation run as batched tensor ops. Seeding by epoch
(not by a running generator) is what makes a resumed run see exactly the batches an uninterrupted one saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dlapps.data.arrays import ImageArrays
from dlapps.data.augment import normalize, random_crop, random_hflip


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state depends only on ``(seed, epoch)``."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class Transform:
    """What each batch goes through: a random crop after zero-padding by ``crop_padding`` pixels and random
    horizontal flips (drawn per epoch), then normalisation with ``mean``/``std`` (else scaling to [0, 1])."""

    crop_padding: int = 0
    hflip: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crop_padding:
            images = random_crop(images, self.crop_padding, generator)
        if self.hflip:
            images = random_hflip(images, generator)
        if self.mean is not None and self.std is not None:
            return normalize(images, self.mean, self.std)
        return images.float() / 255.0


PLAIN = Transform()  # images scaled to [0, 1], nothing else
CROP_AND_FLIP = Transform(crop_padding=4, hflip=True)  # the CIFAR augmentation of He et al.


@dataclass(frozen=True)
class Shard:
    """Which part of the data a process of a data-parallel training holds: shard ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1


WHOLE = Shard()  # all of the data: a world of one process


class ResidentLoader:
    """Iterate ``(inputs, labels)`` batches of a split held on ``device``.

    Inputs are float32, made by ``transform`` (default: scaled to [0, 1]).
    Call :meth:`set_epoch` before iterating to get that epoch's order and augmentation.
    With a ``shard`` of a world of more than one, the loader keeps only that shard of a fixed seeded split of the
    data (all shards of equal size), for data-parallel training.
    """

    def __init__(
        self,
        data: ImageArrays,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        transform: Transform = PLAIN,
        drop_last: bool = False,
        shard: Shard = WHOLE,
    ) -> None:
        rank, world_size = shard.rank, shard.world_size
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        if len(data) == 0:
            raise ValueError("cannot batch an empty dataset")
        if len(data) < world_size:
            raise ValueError(f"cannot split {len(data)} samples into {world_size} non-empty shards")
        if world_size > 1:
            split = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
            data = data.take(split[: len(data) // world_size * world_size][rank::world_size])
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = epoch_generator(self.seed, self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.transform(self.images[index], generator), self.labels[index]
