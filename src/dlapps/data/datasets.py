"""Datasets by name: registered ones, any torchvision classification dataset, an archive or an image folder.

A dataset is named as

- a registered name (``mnist``, ``cifar10``, ``cifar100``, ``fakedata``, ``imagenette``, or one a user's
  module added with ``@DATASETS.register(name, ...)``);
- a torchvision dataset class, ``torchvision:SVHN`` or just ``svhn``, read from the data root with its own
  split names (``--download`` lets torchvision fetch it);
- a path to a ``.npz`` archive (``x_train.npz`` with ``x_test.npz`` beside it, or one archive as a test split);
- a path to an image folder, ``<path>/<class>/<image>`` (one split) or ``<path>/<split>/<class>/<image>``.

Registered datasets read, for each split, an array archive ``<root>/<name>_<split>.npz``, then torchvision's
own layout under the root, or an image folder ``<root>/<name>/<split>``. Whatever is loaded is validated
(dtype, shape, label range, class count), so a wrong file fails with one line naming it, not later inside
a training loop. Mean, std and class names come from the dataset's definition where it has one, else from
the data (see :func:`normalization`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torchvision.transforms import v2

from dlapps.data.arrays import ImageArrays
from dlapps.data.downloads import Need, provider
from dlapps.data.imagenet import imagenet_wnids
from dlapps.data.roots import check_data_root, resolve_data_root, stats_cache
from dlapps.data.sources import (
    Request,
    archive_splits,
    folder_splits,
    limited,
    read_archive,
    read_folder,
    read_torchvision,
    torchvision_class,
    torchvision_splits,
)
from dlapps.errors import DataError
from dlapps.registry import Registry

Reader = Callable[[str, Request], ImageArrays]
EVAL_SPLITS = ("test", "val", "valid", "validation")


@dataclass(frozen=True)
class Dataset:
    """A source of labelled image splits and what is known about it before reading it."""

    name: str  # as the user names it: a registered name, torchvision:<Class>, or a path
    title: str  # for reports and figures
    splits: tuple[str, ...]  # the splits it has (empty: not known until read)
    read: Reader
    num_classes: int | None = None  # None: from the data
    image_shape: tuple[int, int, int] | None = None  # (C, H, W); None: not fixed, or not known until read
    mean: tuple[float, ...] | None = None  # None: measured on the data
    std: tuple[float, ...] | None = None
    label_spaces: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # e.g. imagenet -> output of each class
    registered: bool = False  # a dataset of the registry, the one published numbers refer to by its name
    candidates: Callable[[str, Path], list[Path]] | None = None  # where a split may be under a root, in order

    @property
    def eval_split(self) -> str:
        """The split held out for evaluation: ``test``, else ``val``..., else the only split there is."""
        found = next((s for s in EVAL_SPLITS if s in self.splits), None)
        if found is not None:
            return found
        if len(self.splits) == 1:
            return self.splits[0]
        if not self.splits:
            return "test"  # not known before reading: the common name
        raise DataError(f"dataset {self.name!r} has no test or validation split; its splits: {', '.join(self.splits)}")

    def load(
        self,
        split: str,
        root: str | Path | None = None,
        download: bool = False,
        *,
        size: int | None = None,
        limit: int | None = None,
        seed: int = 0,
        min_classes: int = 2,
    ) -> ImageArrays:
        """A split (or a seeded subset of ``limit`` images) as uint8 arrays, at ``size`` pixels if given.

        A classifier's dataset has at least two classes; ``min_classes=1`` reads a set whose labels do not
        matter (an out-of-distribution set).
        """
        if self.splits and split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        request = Request(resolve_data_root(root), download, size, limit, seed)
        return self.validate(self.read(split, request), size, min_classes)

    def validate(self, arrays: ImageArrays, size: int | None = None, min_classes: int = 2) -> ImageArrays:
        """Check what was read against what the dataset promises; raise a one-line :class:`DataError` if not.

        Every reader's output passes here (archives, image folders, torchvision datasets, registered readers).
        """
        where = arrays.source
        if len(arrays) == 0:
            raise DataError(f"{where}: the split is empty")
        if arrays.images.dtype != torch.uint8 or arrays.images.ndim != 4:
            raise DataError(
                f"{where}: images must be uint8 (N, C, H, W), got {arrays.images.dtype} {arrays.images.ndim}-D"
            )
        if self.image_shape is not None and size is None and arrays.image_shape != self.image_shape:
            raise DataError(
                f"{where}: images are {arrays.image_shape} (C, H, W), but {self.name} images are {self.image_shape}"
            )
        if arrays.labels.shape != (len(arrays.images),):
            raise DataError(f"{where}: {len(arrays.images)} images but labels of shape {tuple(arrays.labels.shape)}")
        classes = self.num_classes or len(arrays.classes)
        if classes < min_classes:
            if classes == 0:
                raise DataError(f"{where} holds {len(arrays)} images but names no class; name the classes (class "
                                "folders, or the archive's classes array)")  # fmt: skip
            held = f"a single class ({arrays.classes[0]!r})" if arrays.classes else "a single class"
            raise DataError(
                f"{where} holds {len(arrays)} images of {held}; a classifier needs at least {min_classes} classes: "
                "add the images of another (a class folder, or labels and class names in the archive)"
            )
        low, high = int(arrays.labels.min()), int(arrays.labels.max())
        if low < 0 or high >= classes:
            raise DataError(f"{where}: labels span {low}..{high}, outside 0..{classes - 1} for {self.name}")
        if len(arrays.classes) != classes:
            raise DataError(f"{where}: {len(arrays.classes)} class names, but {self.name} has {classes} classes")
        return arrays


def normalization(dataset: Dataset, data: ImageArrays) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The dataset's published mean and std, else those measured on ``data``, once per source (cached); a channel
    that never varies keeps std 1."""
    if dataset.mean is not None and dataset.std is not None:
        return dataset.mean, dataset.std
    mean, std = stats_cache(data.source, len(data), data.channel_stats)
    return mean, tuple(s if s > 1e-6 else 1.0 for s in std)  # a constant channel is only centred


def _dataset_entry(name: str, read: Reader | type, **metadata: Any) -> Dataset:
    """A registered reader (a function, or a class of readers, instantiated) and its metadata as a dataset."""
    read = read() if isinstance(read, type) else read
    return Dataset(name, read=read, registered=True, candidates=getattr(read, "candidates", None), **metadata)


# ``@DATASETS.register(name, title=..., splits=(...), num_classes=..., image_shape=..., mean=..., std=...,
# label_spaces=...)`` on a reader ``read(split, request) -> ImageArrays``. ``request`` carries the data root,
# ``download``, and the size and subset asked for (readers that load a whole split may leave those to
# :func:`dlapps.data.sources.limited`).
DATASETS: Registry[Dataset] = Registry("dataset", entry=_dataset_entry)


class ArchiveOrTorchvision:
    """Reads ``<root>/<name>_<split>.npz``, else torchvision's layout ``<root>/<folder>`` (downloading if allowed)."""

    name: str  # of the archives
    torchvision_class: type
    folder: str  # torchvision's folder under the root

    def candidates(self, split: str, root: Path) -> list[Path]:
        return [root / f"{self.name}_{split}.npz", root / self.folder]

    def __call__(self, split: str, request: Request) -> ImageArrays:
        check_data_root(request.root)
        archive = request.root / f"{self.name}_{split}.npz"
        if archive.is_file():
            return limited(read_archive(archive), request)
        tv_folder = request.root / self.folder
        if tv_folder.is_dir() or request.download:
            return read_torchvision(self.torchvision_class, split, request)
        if not request.root.exists():
            raise DataError(
                f"data root {request.root} does not exist; point --data-root or $DLAPPS_DATA at your data folder, "
                "or add --download"
            )
        raise DataError(
            f"{self.name}/{split} not found under data root {request.root} (looked for {archive}, {tv_folder}); "
            "point --data-root or $DLAPPS_DATA at a folder that holds them, or add --download to fetch it with "
            "torchvision"
        )


class FolderUnderRoot:
    """Reads the image folder ``<root>/<name>/<split>/<class>/<image>``."""

    name: str

    def candidates(self, split: str, root: Path) -> list[Path]:
        return [root / self.name / split]

    def __call__(self, split: str, request: Request) -> ImageArrays:
        check_data_root(request.root)
        folder = request.root / self.name / split
        if not folder.is_dir():
            raise DataError(
                f"{self.name}/{split} not found under data root {request.root} (looked for "
                f"{request.root / self.name / split}); point --data-root or $DLAPPS_DATA at a folder that holds "
                "it, or place the files there"
            )
        return read_folder(folder, request)


_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Imagenette's folders (ImageNet WordNet ids), sorted, are these ImageNet-1k class indices.
IMAGENETTE_TO_IMAGENET = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)


@DATASETS.register("mnist", title="MNIST", splits=("train", "test"), num_classes=10, image_shape=(1, 28, 28),
                   mean=(0.1307,), std=(0.3081,))  # fmt: skip
class Mnist(ArchiveOrTorchvision):
    name, torchvision_class, folder = "mnist", torchvision.datasets.MNIST, "MNIST"


@DATASETS.register("cifar10", title="CIFAR-10", splits=("train", "test"), num_classes=10, image_shape=(3, 32, 32),
                   mean=_CIFAR_MEAN, std=_CIFAR_STD)  # fmt: skip
class Cifar10(ArchiveOrTorchvision):
    name, torchvision_class, folder = "cifar10", torchvision.datasets.CIFAR10, "cifar-10-batches-py"


@DATASETS.register("cifar100", title="CIFAR-100", splits=("train", "test"), num_classes=100,
                   image_shape=(3, 32, 32), mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))  # fmt: skip
class Cifar100(ArchiveOrTorchvision):
    name, torchvision_class, folder = "cifar100", torchvision.datasets.CIFAR100, "cifar-100-python"


@DATASETS.register("imagenette", title="Imagenette", splits=("train", "val"), num_classes=10, mean=_IMAGENET_MEAN,
                   std=_IMAGENET_STD, label_spaces={"imagenet": IMAGENETTE_TO_IMAGENET})  # fmt: skip
class Imagenette(FolderUnderRoot):
    name = "imagenette"


def fakedata_arrays(
    split: str, size: int = 10_000, seed: int = 0, shape: tuple[int, int, int] = (3, 32, 32)
) -> ImageArrays:
    """torchvision's FakeData, made reproducible by a fixed ``random_offset`` per split."""
    offset = seed + (0 if split == "test" else 1_000_000)
    dataset = torchvision.datasets.FakeData(
        size=size, image_size=shape, num_classes=10, transform=v2.PILToTensor(), random_offset=offset
    )
    images, labels = zip(*(dataset[i] for i in range(size)), strict=True)
    return ImageArrays(
        images=torch.stack(images),
        labels=torch.as_tensor(labels, dtype=torch.int64),
        classes=tuple(f"fake_{i}" for i in range(10)),
        source=f"torchvision FakeData(size={size}, image_size={shape}, random_offset={offset})",
    )


@DATASETS.register("fakedata", title="FakeData", splits=("train", "test"), num_classes=10, image_shape=(3, 32, 32),
                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # fmt: skip
def fakedata(split: str, request: Request) -> ImageArrays:
    return limited(fakedata_arrays(split), request)


def _torchvision_dataset(cls: type, name: str) -> Dataset:
    return Dataset(
        name, f"{cls.__name__} (torchvision)", torchvision_splits(cls),
        lambda split, request: read_torchvision(cls, split, request),
    )  # fmt: skip


def _archive_dataset(name: str, path: Path, splits: dict[str, Path]) -> Dataset:
    def read(split: str, request: Request) -> ImageArrays:
        return limited(read_archive(splits[split]), request)

    stem = re.sub(r"_(train|test|val|valid|validation)$", "", path.name.removesuffix(".npz"))
    return Dataset(name, stem, tuple(splits), read)


def _folder_dataset(name: str, path: Path) -> Dataset:
    splits = folder_splits(path)
    title = path.parent.name if len(splits) == 1 and path.name in ("train", "test", "val", "valid") else path.name

    def read(split: str, request: Request) -> ImageArrays:
        return read_folder(splits[split], request)

    classes = sorted(p.name for p in next(iter(splits.values())).iterdir() if p.is_dir())
    return Dataset(name, title, tuple(splits), read, label_spaces=imagenet_label_space(classes))


def imagenet_label_space(classes: list[str]) -> dict[str, tuple[int, ...]]:
    """``{"imagenet": outputs}`` when every class is an ImageNet-1k WordNet id (``n01440764``), else nothing."""
    wnids = imagenet_wnids()
    if classes and all(c in wnids for c in classes):
        return {"imagenet": tuple(wnids.index(c) for c in classes)}
    return {}


def looks_like_path(name: str) -> bool:
    return "/" in name or name.endswith(".npz") or name.startswith((".", "~"))


def get_dataset(name: str) -> Dataset:
    """The dataset ``name`` names (see the module docstring); an unknown name lists what is known."""
    if name in DATASETS:
        return DATASETS[name]
    cls = torchvision_class(name.removeprefix("torchvision:"))
    if cls is not None and not looks_like_path(name):
        return _torchvision_dataset(cls, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder_dataset(name, path)
    splits = archive_splits(path)
    if splits:
        return _archive_dataset(name, path, splits)
    if path.exists():
        raise DataError(
            f"dataset path {name} is neither a .npz archive (or x_train.npz / x_test.npz pair) nor an image folder"
        )
    if looks_like_path(name):
        raise DataError(
            f"dataset path {name} does not exist (nor {path.name.removesuffix('.npz')}_train.npz / _test.npz)"
        )
    raise DataError(
        f"unknown dataset {name!r}; registered: {', '.join(DATASETS)}; or a torchvision dataset "
        "(torchvision:SVHN), a .npz archive or an image folder given by its path"
    )


class DatasetNames:
    """Config checker for dataset fields: any name :func:`get_dataset` accepts."""

    @staticmethod
    def check(name: str) -> None:
        get_dataset(name)


DATASET = DatasetNames()


def split_need(name: str, split: str, root: str | Path | None = None) -> Need | None:
    """A registered dataset's split as something a run reads from the data root (None for data that is not looked
    for under the root: generated, named by a path, or a torchvision dataset that torchvision finds itself)."""
    dataset = DATASETS[name] if name in DATASETS else None
    if dataset is None or dataset.candidates is None or (dataset.splits and split not in dataset.splits):
        return None
    places = tuple(dataset.candidates(split, resolve_data_root(root)))
    return Need(f"{dataset.title} {split} split", places, provider(name, split))


def load_arrays(name: str, split: str, root: str | Path | None = None, download: bool = False, **kwargs) -> ImageArrays:
    """``get_dataset(name).load(split, root, download, **kwargs)``."""
    return get_dataset(name).load(split, root, download, **kwargs)


@dataclass(frozen=True)
class Availability:
    name: str
    split: str
    found: bool
    where: str


def find_datasets(root: str | Path | None = None) -> list[Availability]:
    """Where each registered dataset's splits are under ``root``, and the archives and image folders there."""
    root = resolve_data_root(root)
    check_data_root(root)
    rows = []
    for name, dataset in DATASETS.items():
        for split in dataset.splits:
            if dataset.candidates is None:
                rows.append(Availability(name, split, True, "generated"))
                continue
            places = dataset.candidates(split, root)
            hit = next((p for p in places if p.exists()), None)
            rows.append(Availability(name, split, hit is not None, str(hit or f"missing (looked for {places[0]})")))
    if root.is_dir():
        registered = {f"{n}_{s}.npz" for n, d in DATASETS.items() for s in d.splits} | set(DATASETS)
        listed: set[Path] = set()
        for path in sorted(root.iterdir()):
            if path.name in registered or path.name.startswith(".") or path in listed:
                continue
            try:
                found = archive_splits(path) if path.suffix == ".npz" else folder_splits(path) if path.is_dir() else {}
            except DataError:
                continue
            listed.update(found.values())
            for split, where in found.items():
                rows.append(Availability(str(path), split, True, str(where)))
    return rows
