"""Readers that turn what is on disk into :class:`ImageArrays`: array archives, torchvision datasets and
image folders.

A reader returns a whole split (or the seeded subset a request asks for, drawn before anything is decoded)
as uint8 (N, C, H, W) images, int64 labels and class names. Nothing here unpickles: archives are read with
``allow_pickle=False`` and torchvision datasets by torchvision's own loaders. Every image file a user hands
dlapps is opened by :func:`read_image`, so that anything Pillow cannot or will not decode is one
:class:`DataError` line naming the file.
"""

from __future__ import annotations

import ast
import functools
import inspect
import lzma
import re
import struct
import textwrap
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader
from torchvision.transforms import v2

from dlapps.data.arrays import ImageArrays, subset_indices
from dlapps.data.augment import resize_images
from dlapps.data.roots import check_data_root
from dlapps.errors import DataError, first_line

_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")


@dataclass(frozen=True)
class Request:
    """What a reader is asked for besides the split."""

    root: Path
    download: bool = False
    size: int | None = None  # square side length; None: the images' own size
    limit: int | None = None  # a seeded random subset of this many images (None: all)
    seed: int = 0


def limited(arrays: ImageArrays, request: Request) -> ImageArrays:
    """The request's subset and size, for readers that had to load the whole split."""
    arrays = arrays.subset(request.limit, request.seed)
    if request.size is not None and arrays.image_shape[1:] != (request.size, request.size):
        resized = resize_images(arrays.images, (request.size, request.size))
        return ImageArrays(resized, arrays.labels, arrays.classes, f"{arrays.source}, resized to {request.size}px")
    return arrays


# --- array archives ---------------------------------------------------------------------------------------


def check_archive_headers(path: Path) -> None:
    """Read every member's ``.npy`` header and refuse one that claims more data than the member holds, before
    anything is allocated (a hostile header can claim terabytes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(handle)
                if dtype.hasobject:
                    raise DataError(f"{path}: {member.filename} holds Python objects, which dlapps never loads")
                claimed = dtype.itemsize * int(np.prod(shape, dtype=np.float64))
                if claimed > member.file_size:
                    raise DataError(
                        f"{path}: {member.filename} claims {claimed:,} bytes but holds {member.file_size:,}; "
                        "the archive is damaged or forged"
                    )
    except _UNREADABLE as exc:
        message = str(exc) if isinstance(exc, zipfile.BadZipFile | OSError | EOFError) else "an invalid array header"
        raise DataError(f"{path} is unreadable ({type(exc).__name__}: {message}); replace or re-create it") from None


ARCHIVES_KEPT = 6  # decoded archives kept per process


def preload_archives(paths: Iterable[Path]) -> None:
    """Decode the ``.npz`` archives among ``paths`` (as many as are kept), several at once, largest first, so that
    what reads them later finds them decoded: LZMA decoding releases the GIL, so on two cores the five archives
    of the course's data take 11 s instead of 16. The threads are gone when this returns (a process that forks
    must not have any)."""
    archives = sorted(
        {p.resolve() for p in paths if p.suffix == ".npz" and p.is_file()}, key=lambda p: -p.stat().st_size
    )
    if len(archives) > 1:
        with ThreadPoolExecutor(min(len(archives), torch.get_num_threads())) as pool:
            list(pool.map(read_archive, archives[:ARCHIVES_KEPT]))


def read_archive(path: Path) -> ImageArrays:
    """A ``.npz`` archive (``images`` uint8 NHWC, ``labels`` integers, ``classes``) as NCHW tensors.

    Read once per process while the file is unchanged (the studies of ``reproduce`` share CIFAR-10, whose
    LZMA archive takes 9 s to decompress on a 2-core CPU), so the tensors are shared: never modify them.
    """
    stat = path.stat() if path.is_file() else None
    return _read_archive(path.resolve(), stat and (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=ARCHIVES_KEPT)
def _read_archive(path: Path, version: tuple[int, int] | None) -> ImageArrays:
    check_archive_headers(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"images", "labels", "classes"} - set(archive.files)
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(sorted(missing))}")
            images, labels, classes = archive["images"], archive["labels"], archive["classes"]
    except _UNREADABLE as exc:
        raise DataError(f"{path} is unreadable ({type(exc).__name__}); replace or re-create it") from None
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


def archive_splits(path: Path) -> dict[str, Path]:
    """The splits an archive path names: ``x_train.npz`` with its ``x_<split>.npz`` siblings, or one archive.

    ``x`` alone also names the pair when ``x_train.npz`` or ``x_test.npz`` exists. A single archive of any
    other name is one split, ``test``.
    """
    match = re.fullmatch(rf"(.*)_({'|'.join(SPLIT_NAMES)})\.npz", path.name)
    stem = match.group(1) if match else path.name.removesuffix(".npz")
    siblings = {split: path.parent / f"{stem}_{split}.npz" for split in SPLIT_NAMES}
    found = {split: p for split, p in siblings.items() if p.is_file()}
    if match or (path.suffix != ".npz" and found):
        return found
    return {"test": path} if path.suffix == ".npz" and path.is_file() else {}


# --- torchvision datasets ---------------------------------------------------------------------------------


def torchvision_class(name: str) -> type | None:
    """The torchvision dataset class called ``name`` (any letter case), if there is one."""
    wanted = name.lower()
    for attribute in torchvision.datasets.__all__:
        cls = getattr(torchvision.datasets, attribute)
        if (
            attribute.lower() == wanted
            and isinstance(cls, type)
            and issubclass(cls, torchvision.datasets.VisionDataset)
        ):
            return cls
    return None


def torchvision_splits(cls: type) -> tuple[str, ...]:
    """A torchvision dataset's split names: train/test for a ``train`` flag, else the values its constructor
    checks its ``split`` argument against (read from its source; empty when that cannot be told)."""
    parameters = inspect.signature(cls.__init__).parameters
    if "split" not in parameters:
        return ("train", "test") if "train" in parameters else ()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    except (OSError, TypeError, SyntaxError):
        return ()
    for node in ast.walk(tree):
        called = getattr(node, "func", None)
        if not (
            isinstance(node, ast.Call) and getattr(called, "id", getattr(called, "attr", None)) == "verify_str_arg"
        ):
            continue
        if len(node.args) < 3 or not (isinstance(node.args[1], ast.Constant) and node.args[1].value == "split"):
            continue
        try:
            return tuple(ast.literal_eval(node.args[2]))
        except ValueError:
            pass
        for part in ast.walk(node.args[2]):  # self.splits, or tuple(self.split_list.keys())
            if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == "self":
                value = getattr(cls, part.attr, None)
                if isinstance(value, dict | list | tuple):
                    return tuple(value)
    return ()


def _split_arguments(cls: type, split: str) -> dict[str, object]:
    parameters = inspect.signature(cls.__init__).parameters
    if "split" in parameters:
        return {"split": split}
    if "train" in parameters:
        if split not in ("train", "test"):
            raise DataError(f"torchvision {cls.__name__} has the splits train and test, not {split!r}")
        return {"train": split == "train"}
    raise DataError(
        f"torchvision {cls.__name__} takes neither a split nor a train argument; dlapps cannot choose a split"
    )


def _as_nchw(data: object) -> torch.Tensor | None:
    """A dataset's ``data`` attribute as uint8 NCHW, where it is an image array of a layout we can tell."""
    if not isinstance(data, np.ndarray | torch.Tensor):
        return None
    images = torch.as_tensor(np.asarray(data))
    if images.dtype != torch.uint8:
        return None
    if images.ndim == 3:
        return images.unsqueeze(1)
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return images.permute(0, 3, 1, 2)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return images
    return None


def _labels_attribute(dataset: object, count: int) -> torch.Tensor | None:
    for name in ("targets", "labels", "_labels"):
        labels = getattr(dataset, name, None)
        if labels is not None and len(labels) == count:
            return torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return None


def read_torchvision(cls: type, split: str, request: Request) -> ImageArrays:
    """Any torchvision classification dataset: its array attributes where it has them, else image by image."""
    check_data_root(request.root)
    kwargs = _split_arguments(cls, split)
    parameters = inspect.signature(cls.__init__).parameters
    if "download" in parameters:
        kwargs["download"] = request.download
    if "loader" in parameters and parameters["loader"].default is default_loader:
        kwargs["loader"] = read_image  # the same RGB image as torchvision's loader, with errors that name the file
    try:
        dataset = cls(str(request.root), **kwargs)
    except (RuntimeError, OSError, ValueError, ImportError) as exc:
        hint = "" if request.download else "; add --download to let torchvision fetch it"
        raise DataError(
            f"torchvision {cls.__name__}/{split} is not readable under {request.root} ({first_line(exc)}){hint}"
        ) from None
    source = f"torchvision {cls.__name__} ({split}) at {request.root}"
    classes = tuple(str(c[0] if isinstance(c, tuple | list) else c) for c in getattr(dataset, "classes", ()) or ())
    images = _as_nchw(getattr(dataset, "data", None))
    labels = None if images is None else _labels_attribute(dataset, len(images))
    if images is not None and labels is not None and len(images) and _first_image_matches(dataset, images[0]):
        arrays = ImageArrays(images.contiguous(), labels, classes or _numbered(labels), source)
        return limited(arrays, request)
    chosen = subset_indices(len(dataset), request.limit, request.seed)
    indices = range(len(dataset)) if chosen is None else chosen.tolist()
    pairs = []
    for i in indices:
        with image_errors(f"image {i} of {source}"):  # datasets that open their images themselves
            pairs.append(dataset[i])
    decoded = _decode([image for image, _ in pairs], request.size, source)
    labels = torch.tensor([int(label) for _, label in pairs], dtype=torch.int64)
    return ImageArrays(decoded, labels, classes or _numbered(labels), source)


def _first_image_matches(dataset, first: torch.Tensor) -> bool:
    try:
        image = dataset[0][0]
    except Exception:  # noqa: BLE001 - any failure means the array path cannot be trusted
        return False
    return isinstance(image, Image.Image) and torch.equal(v2.functional.pil_to_tensor(image), first)


def _numbered(labels: torch.Tensor) -> tuple[str, ...]:
    return tuple(str(i) for i in range(int(labels.max()) + 1)) if len(labels) else ()


# --- image folders ----------------------------------------------------------------------------------------


_IMAGE_FAILURES = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)


@contextmanager
def image_errors(name: object) -> Iterator[None]:
    """Pillow's failures on the image ``name`` inside the block as one :class:`DataError` line naming it: not an
    image, truncated or damaged, or larger than Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``;
    Pillow only warns up to twice that, and decodes, but here anything above it is refused)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DataError(
            f"{name} is too large to decode safely ({size}, over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} against "
            "decompression bombs); shrink or remove it"
        ) from None
    except UnidentifiedImageError:
        raise DataError(f"{name} is not a readable image (not a format Pillow knows); remove or replace it") from None
    except _IMAGE_FAILURES as exc:
        raise DataError(
            f"{name} is not a readable image ({type(exc).__name__}: {first_line(exc)}); remove or replace it"
        ) from None


def read_image(path: str | Path) -> Image.Image:
    """The image file ``path``, decoded whole, as RGB: how dlapps opens every image a user hands it. Anything
    Pillow cannot or will not decode (see :func:`image_errors`) is one :class:`DataError` line naming the file."""
    with image_errors(path), open(path, "rb") as handle, Image.open(handle) as image:
        return image.convert("RGB")


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for p in folder.iterdir())


def folder_splits(path: Path) -> dict[str, Path]:
    """The splits of an image-folder tree: ``path`` itself when its subfolders are classes (one split named
    after it), else each subfolder whose own subfolders are classes (``train/``, ``val/``, ...)."""
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise DataError(
            f"{path} holds no class folders (expected {path}/<class>/<image> or {path}/<split>/<class>/<image>)"
        )
    if any(_holds_images(p) for p in subfolders):
        return {path.name: path}
    splits = {p.name: p for p in subfolders if any(c.is_dir() and _holds_images(c) for c in p.iterdir())}
    if not splits:
        raise DataError(f"{path} holds neither class folders with images nor split folders of class folders")
    return splits


_TO_TENSOR = v2.PILToTensor()


def _decode(images: list[Image.Image], size: int | None, source: str) -> torch.Tensor:
    """PIL images to uint8 NCHW: at ``size``, the shorter side resized then centre-cropped; else as they are."""
    if size is not None:
        fit = v2.Compose([_TO_TENSOR, v2.Resize(size), v2.CenterCrop(size)])
        return torch.stack([fit(image) for image in images])
    tensors = [_TO_TENSOR(image) for image in images]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise DataError(f"{source}: images differ in size ({a} and {b}, C, H, W); give an image size (image_size=N)")
    return torch.stack(tensors)


def read_folder(folder: Path, request: Request) -> ImageArrays:
    """An ``ImageFolder`` tree ``<folder>/<class>/<image>`` as RGB arrays; only the requested subset is decoded."""
    try:
        listing = torchvision.datasets.ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"{folder} is not a readable image folder ({exc})") from None
    chosen = subset_indices(len(listing.samples), request.limit, request.seed)
    samples = listing.samples if chosen is None else [listing.samples[i] for i in chosen.tolist()]
    images = [read_image(path) for path, _ in samples]
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageArrays(_decode(images, request.size, str(folder)), labels, tuple(listing.classes), str(folder))
