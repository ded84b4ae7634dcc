"""Datasets by name, read from a data root.

For every dataset and split, sources are tried in order:

1. an array archive ``<root>/<name>_<split>.npz`` (``images`` uint8 NHWC, ``labels`` int64, ``classes``);
2. torchvision's own layout under ``<root>`` (downloaded there by torchvision when ``download=True``);
3. for image-folder datasets, an ``ImageFolder`` tree ``<root>/<name>/<split>/<class>/*``.

Whatever is loaded is validated (shape, dtype, label range, class count), so a wrong file fails here with
one line naming it, not later inside a training loop.
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.transforms import v2

from dlapps.data.arrays import ImageArrays
from dlapps.data.roots import resolve_data_root
from dlapps.errors import DataError

_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset must look like, and where torchvision keeps it."""

    name: str
    num_classes: int
    splits: tuple[str, ...]
    image_shape: tuple[int, int, int] | None  # (C, H, W); None where images vary in size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    torchvision_folder: str | None = None  # folder torchvision reads under the root
    torchvision_loader: Callable[[Path, str, bool], ImageArrays] | None = None
    image_folder: bool = False
    synthetic: Callable[[str], ImageArrays] | None = None

    def archive_path(self, root: Path, split: str) -> Path:
        return root / f"{self.name}_{split}.npz"


def _from_torchvision(cls: type, images_attr: str = "data") -> Callable[[Path, str, bool], ImageArrays]:
    def load(root: Path, split: str, download: bool) -> ImageArrays:
        dataset = cls(str(root), train=(split == "train"), download=download)
        images = torch.as_tensor(np.asarray(getattr(dataset, images_attr)))
        if images.ndim == 3:  # MNIST keeps (N, H, W)
            images = images.unsqueeze(-1)
        return ImageArrays(
            images=images.permute(0, 3, 1, 2).contiguous(),
            labels=torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64),
            classes=tuple(dataset.classes),
            source=f"torchvision {cls.__name__} at {root}",
        )

    return load


def fakedata_arrays(split: str, size: int = 10_000, seed: int = 0) -> ImageArrays:
    """torchvision's FakeData at 3x32x32, made reproducible by a fixed ``random_offset`` per split."""
    offset = seed + (0 if split == "test" else 1_000_000)
    dataset = torchvision.datasets.FakeData(
        size=size, image_size=(3, 32, 32), num_classes=10, transform=v2.PILToTensor(), random_offset=offset
    )
    images, labels = zip(*(dataset[i] for i in range(size)), strict=True)
    return ImageArrays(
        images=torch.stack(images),
        labels=torch.as_tensor(labels, dtype=torch.int64),
        classes=tuple(f"fake_{i}" for i in range(10)),
        source=f"torchvision FakeData(size={size}, random_offset={offset})",
    )


# Imagenette's folders (ImageNet WordNet ids), sorted, are these ImageNet-1k class indices.
IMAGENETTE_TO_IMAGENET = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)

_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "mnist",
            10,
            ("train", "test"),
            (1, 28, 28),
            (0.1307,),
            (0.3081,),
            torchvision_folder="MNIST",
            torchvision_loader=_from_torchvision(torchvision.datasets.MNIST),
        ),
        DatasetSpec(
            "cifar10",
            10,
            ("train", "test"),
            (3, 32, 32),
            _CIFAR_MEAN,
            _CIFAR_STD,
            torchvision_folder="cifar-10-batches-py",
            torchvision_loader=_from_torchvision(torchvision.datasets.CIFAR10),
        ),
        DatasetSpec(
            "cifar100",
            100,
            ("train", "test"),
            (3, 32, 32),
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
            torchvision_folder="cifar-100-python",
            torchvision_loader=_from_torchvision(torchvision.datasets.CIFAR100),
        ),
        DatasetSpec(
            "fakedata",
            10,
            ("train", "test"),
            (3, 32, 32),
            (0.5, 0.5, 0.5),
            (0.5, 0.5, 0.5),
            synthetic=fakedata_arrays,
        ),
        DatasetSpec(
            "imagenette",
            10,
            ("train", "val"),
            None,
            _IMAGENET_MEAN,
            _IMAGENET_STD,
            image_folder=True,
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise DataError(f"dataset {spec.name!r} has no split {split!r}; splits: {', '.join(spec.splits)}")


def read_archive(path: Path) -> ImageArrays:
    """Read a ``.npz`` array archive (never unpickling anything) into NCHW tensors."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"images", "labels", "classes"} - set(archive.files)
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(sorted(missing))}")
            images, labels, classes = archive["images"], archive["labels"], archive["classes"]
    except _UNREADABLE as exc:
        raise DataError(f"{path} is unreadable ({type(exc).__name__}: {exc}); replace or re-create it") from None
    if images.ndim != 4:
        raise DataError(f"{path}: images must be (N, H, W, C), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8, got {images.dtype}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be integers, got {labels.dtype}")
    return ImageArrays(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=tuple(str(c) for c in classes),
        source=str(path),
    )


def validate_arrays(arrays: ImageArrays, spec: DatasetSpec) -> ImageArrays:
    """Check what was loaded against what ``spec`` promises; raise a one-line :class:`DataError` if not."""
    where = arrays.source
    if len(arrays) == 0:
        raise DataError(f"{where}: the split is empty")
    if arrays.images.dtype != torch.uint8 or arrays.images.ndim != 4:
        raise DataError(f"{where}: images must be uint8 (N, C, H, W), got {arrays.images.dtype} {arrays.images.ndim}-D")
    if spec.image_shape is not None and arrays.image_shape != spec.image_shape:
        raise DataError(
            f"{where}: images are {arrays.image_shape} (C, H, W), but {spec.name} images are {spec.image_shape}"
        )
    if arrays.labels.shape != (len(arrays.images),):
        raise DataError(f"{where}: {len(arrays.images)} images but labels of shape {tuple(arrays.labels.shape)}")
    low, high = int(arrays.labels.min()), int(arrays.labels.max())
    if low < 0 or high >= spec.num_classes:
        raise DataError(f"{where}: labels span {low}..{high}, outside 0..{spec.num_classes - 1} for {spec.name}")
    if len(arrays.classes) != spec.num_classes:
        raise DataError(f"{where}: {len(arrays.classes)} class names, but {spec.name} has {spec.num_classes} classes")
    return arrays


def _not_found(spec: DatasetSpec, split: str, root: Path, looked: list[Path]) -> DataError:
    places = ", ".join(str(p) for p in looked)
    how = "add --download to fetch it with torchvision" if spec.torchvision_loader else "place the files there"
    return DataError(
        f"{spec.name}/{split} not found under data root {root} (looked for {places}); "
        f"point --data-root or $DLAPPS_DATA at a folder that holds them, or {how}"
    )


def load_arrays(name: str, split: str, root: str | Path | None = None, download: bool = False) -> ImageArrays:
    """Load a whole split as uint8 tensors on the CPU, validated against the dataset's spec."""
    spec = get_spec(name)
    _check_split(spec, split)
    if spec.synthetic is not None:
        return validate_arrays(spec.synthetic(split), spec)
    if spec.image_folder:
        raise DataError(f"{name} is an image-folder dataset; use dlapps.data.image_folder() for it")
    root = resolve_data_root(root)
    archive = spec.archive_path(root, split)
    if archive.is_file():
        return validate_arrays(read_archive(archive), spec)
    looked = [archive]
    if spec.torchvision_loader is not None:
        tv_folder = root / spec.torchvision_folder
        looked.append(tv_folder)
        if tv_folder.is_dir() or download:
            try:
                arrays = spec.torchvision_loader(root, split, download)
            except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
                raise DataError(f"torchvision could not read {name}/{split} from {tv_folder}: {exc}") from None
            return validate_arrays(arrays, spec)
    if not root.exists():
        raise DataError(
            f"data root {root} does not exist; point --data-root or $DLAPPS_DATA at your data folder"
            + (", or add --download" if spec.torchvision_loader else "")
        )
    raise _not_found(spec, split, root, looked)


def image_folder(
    name: str, split: str, root: str | Path | None = None, transform=None
) -> torchvision.datasets.ImageFolder:
    """An image-folder dataset (``<root>/<name>/<split>/<class>/*``) for the DataLoader path."""
    spec = get_spec(name)
    _check_split(spec, split)
    if not spec.image_folder:
        raise DataError(f"{name} is an array dataset; use dlapps.data.load_arrays() for it")
    root = resolve_data_root(root)
    folder = root / name / split
    if not folder.is_dir():
        raise _not_found(spec, split, root, [folder])
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    if len(dataset.classes) != spec.num_classes:
        raise DataError(f"{folder}: {len(dataset.classes)} class folders, but {name} has {spec.num_classes} classes")
    return dataset


@dataclass(frozen=True)
class Availability:
    name: str
    split: str
    found: bool
    where: str


def find_datasets(root: str | Path | None = None) -> list[Availability]:
    """What ``load_arrays``/``image_folder`` would find under ``root``, without loading image data."""
    root = resolve_data_root(root)
    rows = []
    for spec in DATASETS.values():
        for split in spec.splits:
            if spec.synthetic is not None:
                rows.append(Availability(spec.name, split, True, "generated (torchvision FakeData)"))
                continue
            if spec.image_folder:
                candidates = [root / spec.name / split]
            else:
                candidates = [spec.archive_path(root, split)]
                if spec.torchvision_folder:
                    candidates.append(root / spec.torchvision_folder)
            hit = next((p for p in candidates if p.exists()), None)
            rows.append(
                Availability(spec.name, split, hit is not None, str(hit or f"missing (looked for {candidates[0]})"))
            )
    return rows
