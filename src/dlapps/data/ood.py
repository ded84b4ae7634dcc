"""Out-of-distribution sets for CIFAR-10 classifiers, as ordinary :class:`ImageArrays`.

Every set is uint8 (N, C, H, W) like any split of the data layer, so detectors and the ``ood`` study treat a
user's own archive exactly like the built-in sets. Sets by name (see :data:`OOD_SETS`):

- ``cifar100``: CIFAR-100 test without the classes that overlap CIFAR-10 (near-OOD; :data:`CIFAR10_OVERLAP`);
- ``mnist``: MNIST test resized to 32x32 and repeated to RGB (far-OOD);
- ``fakedata``: torchvision FakeData at 3x32x32 with a fixed seed;
- ``gaussian`` / ``uniform``: i.i.d. pixel noise;
- anything ending in ``.npz``: a user's own array archive (``images`` uint8 NHWC, ``labels``, ``classes``).

Images are never silently resized: :func:`conform` says what does not fit unless resizing is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from dlapps.data.arrays import ImageArrays
from dlapps.data.datasets import fakedata_arrays, load_arrays, read_archive
from dlapps.errors import DataError

CIFAR10_OVERLAP: tuple[str, ...] = ("bus", "pickup_truck", "streetcar", "tractor", "wolf")
"""CIFAR-100 classes left out of the near-OOD set by default, because a CIFAR-10 label fits them too.

- ``bus``, ``pickup_truck``, ``streetcar``, ``tractor``: wheeled motor vehicles that drive on streets — the
  category that CIFAR-10's ``automobile`` and ``truck`` split between them by definition, not by meaning
  (Krizhevsky 2009 had to rule pickup trucks out of both by fiat). "Tractor" also names the tractor unit of
  a semi-trailer truck, and CIFAR-100's tractors are heavy wheeled machines like CIFAR-10's dump trucks.
- ``wolf``: the same species as the domestic dog (*Canis lupus*); grey wolves and husky-like dogs look alike.

Considered and kept as OOD: ``train`` (rail, not street), ``tank``, ``motorcycle``, ``bicycle``,
``lawn_mower``, ``rocket`` (no CIFAR-10 class names them), ``fox`` (genus *Vulpes*, not a dog), ``lion``,
``tiger``, ``leopard`` (big cats; CIFAR-10's ``cat`` is the domestic cat), ``cattle``, ``camel``,
``kangaroo`` (not horses or deer). CIFAR-100 has no birds, frogs, ships or aeroplanes.
"""

NoiseKind = Literal["gaussian", "uniform"]
DEFAULT_SIZE = 2_000  # images in a generated set (noise, FakeData) when no size is asked for


def without_classes(data: ImageArrays, exclude: tuple[str, ...]) -> ImageArrays:
    """``data`` without the images of the classes named in ``exclude`` (labels keep their meaning)."""
    if not exclude:
        return data
    unknown = sorted(set(exclude) - set(data.classes))
    if unknown:
        raise DataError(
            f"cannot exclude {', '.join(map(repr, unknown))} from {data.source}: not among its classes "
            f"({', '.join(data.classes)})"
        )
    dropped = torch.tensor([data.classes.index(name) for name in exclude], dtype=torch.int64)
    kept = data.take(torch.nonzero(~torch.isin(data.labels, dropped)).flatten())
    if len(kept) == 0:
        raise DataError(f"{data.source}: no images are left after excluding {', '.join(exclude)}")
    return replace(kept, source=f"{data.source} without {', '.join(exclude)}")


def cifar100_ood(
    root: str | Path | None = None, download: bool = False, exclude: tuple[str, ...] = CIFAR10_OVERLAP
) -> ImageArrays:
    """CIFAR-100 test without the ``exclude`` classes (names as in CIFAR-100, e.g. ``pickup_truck``)."""
    return without_classes(load_arrays("cifar100", "test", root, download), exclude)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) to uint8 (N, C, *size), bilinear with antialiasing; a no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    resized = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) grey <-> RGB: grey is repeated, RGB becomes ITU-R 601 luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if (have, channels) == (1, 3):
        return images.expand(-1, 3, -1, -1).contiguous()
    if (have, channels) == (3, 1):
        weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(f"cannot convert {have}-channel images to {channels} channels (only grey <-> RGB)")


def conform(arrays: ImageArrays, shape: tuple[int, int, int], *, resize: bool = False) -> ImageArrays:
    """``arrays`` as ``shape`` (C, H, W): unchanged if it fits, converted if ``resize``, else a DataError."""
    if len(arrays) == 0:
        raise DataError(f"{arrays.source}: the set is empty")
    if arrays.image_shape == tuple(shape):
        return arrays
    if not resize:
        raise DataError(
            f"{arrays.source}: images are {arrays.image_shape} (C, H, W) but the model takes {tuple(shape)}; "
            "convert them, or ask for resizing (resize=True; --set resize_ood=true)"
        )
    images = resize_images(convert_channels(arrays.images, shape[0]), shape[1:])
    return replace(arrays, images=images, source=f"{arrays.source}, resized to {tuple(shape)}")


def mnist_rgb32(root: str | Path | None = None, download: bool = False) -> ImageArrays:
    """MNIST test as 3x32x32 images: resized bilinearly and repeated over RGB (a far-OOD set for CIFAR)."""
    return conform(load_arrays("mnist", "test", root, download), (3, 32, 32), resize=True)


def noise(kind: NoiseKind, n: int, seed: int = 0, shape: tuple[int, int, int] = (3, 32, 32)) -> ImageArrays:
    """``n`` noise images: ``gaussian`` N(0.5, 0.25^2) clipped to [0, 1], or ``uniform`` over 0..255."""
    if n <= 0:
        raise DataError(f"a noise set needs at least one image, got n={n}")
    generator = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        values = (0.5 + 0.25 * torch.randn((n, *shape), generator=generator)).clamp(0, 1)
        images = (values * 255).round().to(torch.uint8)
    elif kind == "uniform":
        images = torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)
    else:
        raise DataError(f"unknown noise kind {kind!r}; use gaussian or uniform")
    return ImageArrays(
        images=images,
        labels=torch.zeros(n, dtype=torch.int64),
        classes=(f"{kind} noise",),
        source=f"{kind} noise (n={n}, seed={seed})",
    )


@dataclass(frozen=True)
class OodRequest:
    """How to build a set: where the data is, how many images (None: all, or DEFAULT_SIZE generated)."""

    root: str | Path | None = None
    download: bool = False
    size: int | None = None
    seed: int = 0
    cifar100_exclude: tuple[str, ...] = CIFAR10_OVERLAP


@dataclass(frozen=True)
class OodSetSpec:
    name: str
    distance: Literal["near", "far"]
    description: str
    build: Callable[[OodRequest], ImageArrays]


def _generated(request: OodRequest) -> int:
    return DEFAULT_SIZE if request.size is None else request.size


OOD_SETS: dict[str, OodSetSpec] = {
    spec.name: spec
    for spec in (
        OodSetSpec(
            "cifar100",
            "near",
            "CIFAR-100 test without the classes overlapping CIFAR-10",
            lambda r: cifar100_ood(r.root, r.download, r.cifar100_exclude).subset(r.size, r.seed),
        ),
        OodSetSpec(
            "mnist",
            "far",
            "MNIST test, resized to 32x32 RGB",
            lambda r: mnist_rgb32(r.root, r.download).subset(r.size, r.seed),
        ),
        OodSetSpec(
            "fakedata",
            "far",
            "torchvision FakeData, 3x32x32, fixed seed",
            lambda r: fakedata_arrays("test", _generated(r), r.seed),
        ),
        OodSetSpec(
            "gaussian", "far", "Gaussian pixel noise N(0.5, 0.25²)", lambda r: noise("gaussian", _generated(r), r.seed)
        ),
        OodSetSpec("uniform", "far", "uniform pixel noise", lambda r: noise("uniform", _generated(r), r.seed)),
    )
}


def is_archive(name: str) -> bool:
    return name.endswith(".npz")


def load_ood_set(name: str, request: OodRequest | None = None) -> ImageArrays:
    """An OOD set by name (see :data:`OOD_SETS`) or a user's ``.npz`` archive, subset to ``request.size``."""
    request = request or OodRequest()
    if is_archive(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"OOD archive {path} does not exist")
        data = read_archive(path).subset(request.size, request.seed)
    elif name in OOD_SETS:
        data = OOD_SETS[name].build(request)
    else:
        raise DataError(f"unknown OOD set {name!r}; known: {', '.join(OOD_SETS)}, or a path to a .npz archive")
    if len(data) == 0:
        raise DataError(f"OOD set {name!r} ({data.source}) is empty")
    return data
