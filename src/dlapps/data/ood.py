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

from collections.abc import Callable, Sequence
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

DECLARED_OVERLAP: dict[tuple[str, str], tuple[str, ...]] = {("cifar10", "cifar100"): CIFAR10_OVERLAP}
"""(ID dataset, OOD set) -> the OOD set's classes that an ID label fits although no name is shared."""

Distance = Literal["near", "far", "user"]  # user: a set whose distance nobody declared
DISTANCE_SUFFIXES = (":near", ":far")
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


def _same_name(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").strip()


def shared_classes(data: ImageArrays, id_classes: Sequence[str]) -> tuple[str, ...]:
    """The classes of ``data`` that the ID data has too, by name (case, ``_`` and ``-`` aside)."""
    ids = {_same_name(name) for name in id_classes}
    return tuple(name for name in data.classes if _same_name(name) in ids)


def without_shared_classes(data: ImageArrays, name: str, request: OodRequest) -> ImageArrays:
    """``data`` (OOD set ``name``) without ``request.exclude``, or by default without the classes it shares with
    the ID data: by name, and those :data:`DECLARED_OVERLAP` declares."""
    if request.exclude is not None:
        return without_classes(data, request.exclude)
    declared = DECLARED_OVERLAP.get((request.id_dataset or "", name), ())
    exclude = tuple(dict.fromkeys(shared_classes(data, request.id_classes) + declared))
    if len(exclude) == len(data.classes):
        raise DataError(f"{data.source} shares every class with the in-distribution data: it is not OOD")
    return without_classes(data, exclude)


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
    """How to build a set: where the data is, how many images (None: all, or DEFAULT_SIZE generated), the
    in-distribution image shape that generated sets take, and the ID data whose classes a labelled set must not
    share (``id_dataset``, ``id_classes``); ``exclude``: the classes to leave out instead (None: those shared)."""

    root: str | Path | None = None
    download: bool = False
    size: int | None = None
    seed: int = 0
    shape: tuple[int, int, int] = (3, 32, 32)
    id_dataset: str | None = None
    id_classes: tuple[str, ...] = ()
    exclude: tuple[str, ...] | None = None

    @property
    def generated(self) -> int:
        return DEFAULT_SIZE if self.size is None else self.size


@dataclass(frozen=True)
class OodSet:
    name: str
    description: str
    build: Callable[[OodRequest], ImageArrays] = field(repr=False)
    reads: tuple[tuple[str, str], ...] = ()  # (dataset, split) it is made from; none: generated
    near_to: tuple[str, ...] = ()  # the ID datasets it is near-OOD for; far-OOD for every other

    def distance(self, id_dataset: str) -> Distance:
        return "near" if id_dataset in self.near_to else "far"

    def is_made_from(self, id_dataset: str) -> bool:
        return any(dataset == id_dataset for dataset, _ in self.reads)


# ``@OOD_SETS.register(name, description=..., reads=((dataset, split), ...), near_to=(id dataset, ...))`` on a
# builder ``build(request) -> ImageArrays``; ``reads``: the dataset splits it is made from (none: generated).
OOD_SETS: Registry[OodSet] = Registry(
    "OOD set", DataError, entry=lambda name, build, **info: OodSet(name, build=build, **info)
)


def _test_split(dataset: str, request: OodRequest) -> ImageArrays:
    """A dataset's test split without the classes the ID data shares, resized to the ID images' shape."""
    data = without_shared_classes(load_arrays(dataset, "test", request.root, request.download), dataset, request)
    return conform(data.subset(request.size, request.seed), request.shape, resize=True)


@OOD_SETS.register("cifar100", description="CIFAR-100 test", reads=(("cifar100", "test"),), near_to=("cifar10",))
def _cifar100(request: OodRequest) -> ImageArrays:
    return _test_split("cifar100", request)


@OOD_SETS.register("cifar10", description="CIFAR-10 test", reads=(("cifar10", "test"),), near_to=("cifar100",))
def _cifar10(request: OodRequest) -> ImageArrays:
    return _test_split("cifar10", request)


@OOD_SETS.register("mnist", description="MNIST test", reads=(("mnist", "test"),))
def _mnist(request: OodRequest) -> ImageArrays:
    return _test_split("mnist", request)


@OOD_SETS.register("fakedata", description="torchvision FakeData, fixed seed")
def _fakedata(request: OodRequest) -> ImageArrays:
    return fakedata_arrays("test", request.generated, request.seed, request.shape)


@OOD_SETS.register("gaussian", description="Gaussian pixel noise N(0.5, 0.25²)")
def _gaussian(request: OodRequest) -> ImageArrays:
    return noise("gaussian", request.generated, request.seed, request.shape)


@OOD_SETS.register("uniform", description="uniform pixel noise")
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
    def check(entry: str) -> None:
        name, _ = declared(entry)
        if name not in OOD_SETS:
            ood_dataset(name)


OOD_SET = OodSetNames()


def declared(entry: str) -> tuple[str, Distance | None]:
    """An ``ood_sets`` entry as (set name, declared distance): ``mine.npz:near`` -> (``mine.npz``, ``near``)."""
    for suffix in DISTANCE_SUFFIXES:
        if entry.endswith(suffix):
            return entry.removesuffix(suffix), suffix[1:]  # type: ignore[return-value]
    return entry, None


def set_label(entry: str) -> str:
    """A short label: the set's name, or the file or folder name of a path."""
    name, _ = declared(entry)
    return name if name in OOD_SETS else Path(name.rstrip("/")).name.removesuffix(".npz") or name


def _same_dataset(name: str, id_dataset: str) -> bool:
    if name in OOD_SETS:
        return OOD_SETS[name].is_made_from(id_dataset)
    if looks_like_path(name) or looks_like_path(id_dataset):
        return Path(name).expanduser().resolve() == Path(id_dataset).expanduser().resolve()
    return name.removeprefix("torchvision:").lower() == id_dataset.removeprefix("torchvision:").lower()


@dataclass(frozen=True)
class OodChoice:
    """An OOD set chosen for (or left out of) a run on ``id_dataset``, its distance, and why, in words."""

    entry: str  # as configured, ``:near`` / ``:far`` included
    distance: Distance
    reason: str

    @property
    def name(self) -> str:
        return declared(self.entry)[0]

    @property
    def label(self) -> str:
        return set_label(self.entry)


def _choice(entry: str, id_dataset: str) -> OodChoice:
    name, distance = declared(entry)
    if name not in OOD_SETS:
        if distance is None:
            return OodChoice(entry, "user", "your set; its distance is not declared (add :near or :far)")
        return OodChoice(entry, distance, f"your set, declared {distance}-OOD")
    spec = OOD_SETS[name]
    distance = distance or spec.distance(id_dataset)
    why = {"near": "natural images of other classes, from the same kind of source",
           "far": "images from another source"}[distance] if spec.reads else "generated images"  # fmt: skip
    overlap = DECLARED_OVERLAP.get((id_dataset, name), ())
    left = f", without {', '.join(overlap)} (an in-distribution label fits them)" if overlap else ""
    return OodChoice(entry, distance, f"{spec.description}{left}: {why}")


def choose_ood_sets(id_dataset: str, requested: Sequence[str] = ()) -> tuple[list[OodChoice], list[OodChoice]]:
    """The OOD sets for in-distribution data ``id_dataset`` and those left out, each with its distance and why.

    ``requested`` empty: every registered set that is not made from the ID dataset. A requested set that is the
    ID dataset itself is a :class:`DataError`. Classes a labelled set shares with the ID data are dropped when it
    is loaded (:func:`load_ood_set`).
    """
    for entry in requested:
        if _same_dataset(declared(entry)[0], id_dataset):
            raise DataError(f"OOD set {entry!r} is the in-distribution dataset ({id_dataset}) itself; choose another")
    if requested:
        return [_choice(entry, id_dataset) for entry in requested], []
    chosen = [_choice(name, id_dataset) for name in OOD_SETS if not OOD_SETS[name].is_made_from(id_dataset)]
    left = [OodChoice(name, OOD_SETS[name].distance(id_dataset), "it is the in-distribution dataset itself")
            for name in OOD_SETS if OOD_SETS[name].is_made_from(id_dataset)]  # fmt: skip
    return chosen, left


def ood_set_needs(entry: str, root: str | Path | None = None) -> list[Need]:
    """What an OOD set reads from the data root: its datasets' splits, or a dataset's evaluation split."""
    name, _ = declared(entry)
    if name in OOD_SETS:
        reads = OOD_SETS[name].reads
    else:
        reads = ((name, ood_dataset(name).eval_split),)
    return [need for dataset, split in reads if (need := split_need(dataset, split, root)) is not None]


def load_ood_set(entry: str, request: OodRequest | None = None) -> ImageArrays:
    """An OOD set by name, or the evaluation split of any dataset (a path to an archive or a folder, a
    torchvision dataset...), subset to ``request.size`` images, without the classes it shares with the ID data."""
    request = request or OodRequest()
    name, _ = declared(entry)
    if name in OOD_SETS:
        data = OOD_SETS[name].build(request)
    else:
        dataset = ood_dataset(name)
        # an OOD set's labels are not used: a single class will do
        data = dataset.load(
            dataset.eval_split, request.root, request.download, limit=request.size, seed=request.seed, min_classes=1
        )
        data = without_shared_classes(data, name, request)
    if len(data) == 0:
        raise DataError(f"OOD set {name!r} ({data.source}) is empty")
    return data


def load_chosen(choice: OodChoice, request: OodRequest, *, resize: bool = False) -> ImageArrays:
    """A chosen set at the ID images' shape (``request.shape``): a registered set is made to fit, a user's set
    only with ``resize``."""
    return conform(load_ood_set(choice.entry, request), request.shape, resize=resize)


def choices_record(chosen: Sequence[OodChoice], left_out: Sequence[OodChoice]) -> dict[str, list[dict[str, str]]]:
    """What was chosen and left out, and why, for results.json."""
    return {key: [{"set": c.label, "distance": c.distance, "why": c.reason} for c in choices]
            for key, choices in (("chosen", chosen), ("left_out", left_out))}  # fmt: skip
