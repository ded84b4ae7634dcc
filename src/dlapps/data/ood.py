"""Out-of-distribution sets, as ordinary :class:`ImageArrays`.

Every set is uint8 (N, C, H, W) like any split of the data layer, so detectors and the ``ood`` study treat a
user's own data exactly like the built-in sets. Registered sets (:data:`OOD_SETS`, ``@OOD_SETS.register(name, ...)``):

- ``cifar100``: CIFAR-100 test without the classes that overlap CIFAR-10 (near-OOD for CIFAR-10;
  :data:`CIFAR10_OVERLAP`);
- ``mnist``: MNIST test, resized and converted to the in-distribution images' shape (far-OOD);
- ``fakedata``: torchvision FakeData of the in-distribution shape, with a fixed seed;
- ``gaussian`` / ``uniform``: i.i.d. pixel noise of that shape.

Any other name is a dataset (see :func:`dlapps.data.get_dataset`): a path to an ``.npz`` archive or an
image folder, a torchvision dataset; its evaluation split is the OOD set. Images are never silently
resized: :func:`conform` says what does not fit unless resizing is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from dlapps.data.arrays import ImageArrays
from dlapps.data.augment import convert_channels, resize_images
from dlapps.data.datasets import Dataset, fakedata_arrays, get_dataset, load_arrays, looks_like_path, split_need
from dlapps.data.downloads import Need
from dlapps.errors import DataError
from dlapps.registry import Registry

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
    """How to build a set: where the data is, how many images (None: all, or DEFAULT_SIZE generated), and
    the in-distribution image shape that generated sets take."""

    root: str | Path | None = None
    download: bool = False
    size: int | None = None
    seed: int = 0
    cifar100_exclude: tuple[str, ...] = CIFAR10_OVERLAP
    shape: tuple[int, int, int] = (3, 32, 32)

    @property
    def generated(self) -> int:
        return DEFAULT_SIZE if self.size is None else self.size


@dataclass(frozen=True)
class OodSet:
    name: str
    distance: Literal["near", "far"]
    description: str
    build: Callable[[OodRequest], ImageArrays] = field(repr=False)
    reads: tuple[tuple[str, str], ...] = ()  # (dataset, split) it is made from; none: generated


# ``@OOD_SETS.register(name, distance=..., description=..., reads=((dataset, split), ...))`` on a builder
# ``build(request) -> ImageArrays``; ``reads``: the dataset splits it is made from (none: generated).
OOD_SETS: Registry[OodSet] = Registry(
    "OOD set", DataError, entry=lambda name, build, **info: OodSet(name, build=build, **info)
)


@OOD_SETS.register("cifar100", distance="near", description="CIFAR-100 test without the classes overlapping CIFAR-10",
                   reads=(("cifar100", "test"),))  # fmt: skip
def _cifar100(request: OodRequest) -> ImageArrays:
    return cifar100_ood(request.root, request.download, request.cifar100_exclude).subset(request.size, request.seed)


@OOD_SETS.register("mnist", distance="far", description="MNIST test, resized to the in-distribution images' size "
                   "and channels", reads=(("mnist", "test"),))  # fmt: skip
def _mnist(request: OodRequest) -> ImageArrays:
    mnist = load_arrays("mnist", "test", request.root, request.download)
    return conform(mnist, request.shape, resize=True).subset(request.size, request.seed)


@OOD_SETS.register("fakedata", distance="far", description="torchvision FakeData of the in-distribution images' "
                   "shape, fixed seed")  # fmt: skip
def _fakedata(request: OodRequest) -> ImageArrays:
    return fakedata_arrays("test", request.generated, request.seed, request.shape)


@OOD_SETS.register("gaussian", distance="far", description="Gaussian pixel noise N(0.5, 0.25²)")
def _gaussian(request: OodRequest) -> ImageArrays:
    return noise("gaussian", request.generated, request.seed, request.shape)


@OOD_SETS.register("uniform", distance="far", description="uniform pixel noise")
def _uniform(request: OodRequest) -> ImageArrays:
    return noise("uniform", request.generated, request.seed, request.shape)


def ood_dataset(name: str) -> Dataset:
    """The dataset an OOD set name that is not a registered set names; an unknown one lists the sets."""
    try:
        return get_dataset(name)
    except DataError as exc:
        if looks_like_path(name):
            raise
        raise DataError(f"unknown OOD set {name!r}; known: {', '.join(OOD_SETS)}, or any dataset ({exc})") from None


class OodSetNames:
    """Config checker: a registered OOD set, or any dataset name or path (its evaluation split is used)."""

    @staticmethod
    def check(name: str) -> None:
        if name not in OOD_SETS:
            ood_dataset(name)


OOD_SET = OodSetNames()


def set_label(name: str) -> str:
    """A short label: the set's name, or the file or folder name of a path."""
    return name if name in OOD_SETS else Path(name.rstrip("/")).name.removesuffix(".npz") or name


def set_distance(name: str) -> str:
    return OOD_SETS[name].distance if name in OOD_SETS else "user"


def ood_set_needs(name: str, root: str | Path | None = None) -> list[Need]:
    """What an OOD set reads from the data root: its datasets' splits, or a dataset's evaluation split."""
    if name in OOD_SETS:
        reads = OOD_SETS[name].reads
    else:
        reads = ((name, ood_dataset(name).eval_split),)
    return [need for dataset, split in reads if (need := split_need(dataset, split, root)) is not None]


def load_ood_set(name: str, request: OodRequest | None = None) -> ImageArrays:
    """An OOD set by name, or the evaluation split of any dataset (a path to an archive or a folder, a
    torchvision dataset...), subset to ``request.size`` images."""
    request = request or OodRequest()
    if name in OOD_SETS:
        data = OOD_SETS[name].build(request)
    else:
        dataset = ood_dataset(name)
        # an OOD set's labels are not used: a single class will do
        data = dataset.load(
            dataset.eval_split, request.root, request.download, limit=request.size, seed=request.seed, min_classes=1
        )
    if len(data) == 0:
        raise DataError(f"OOD set {name!r} ({data.source}) is empty")
    return data
