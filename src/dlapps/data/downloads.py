"""What dlapps can fetch into the data root, and the check that a run has what it reads before it starts.

A :class:`Resource` is one or more published files, each with its checksum, and how they are installed under
the data root: the course's datasets become ``<name>_<split>.npz`` archives or an image folder (the layout of
every data root dlapps reads), a weights file lands in ``weights/``. A download is written to a ``.part``
file, checked against its size and checksum, and only then moved into place, so a refused or interrupted
download leaves nothing behind. CIFAR comes in its binary distribution: the Python one is pickled, and dlapps
never unpickles.

A run states what it reads as :class:`Need` s; :func:`ensure` fetches the missing ones (``--download``) or
names all of them in one line, with where each comes from and the command that gets them.

``$DLAPPS_DOWNLOAD_MIRROR`` sends every download to a mirror that keeps the original paths:
``https://host/path`` is fetched from ``<mirror>/host/path`` (checksums unchanged).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from dlapps.data.roots import check_data_root
from dlapps.errors import DataError
from dlapps.registry import Registry

MIRROR_VAR = "DLAPPS_DOWNLOAD_MIRROR"


@dataclass(frozen=True)
class Download:
    url: str
    checksum: str  # "md5:<hex>" or "sha256:<hex>", as published
    size: int  # bytes, as published (for messages and the progress bar)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def address(self) -> str:
        """The URL to fetch: the published one, or its copy on ``$DLAPPS_DOWNLOAD_MIRROR``."""
        mirror = os.environ.get(MIRROR_VAR, "").rstrip("/")
        return f"{mirror}/{self.url.split('://', 1)[-1]}" if mirror else self.url


Installer = Callable[[list[Path], Path], None]  # (downloaded files, data root): writes what the resource provides


@dataclass(frozen=True)
class Resource:
    name: str  # what ``dlapps fetch --only`` takes
    title: str
    downloads: tuple[Download, ...]
    provides: tuple[str, ...]  # paths under the data root it installs
    install: Installer

    @property
    def size(self) -> int:
        return sum(d.size for d in self.downloads)

    @property
    def source(self) -> str:
        """Its address, or the folder of its addresses."""
        urls = [d.url for d in self.downloads]
        return urls[0] if len(urls) == 1 else urls[0].rsplit("/", 1)[0] + "/"

    def installed(self, root: Path) -> bool:
        return all((root / p).exists() for p in self.provides)


# The datasets' downloads: ``@RESOURCES.register(name, title=..., downloads=(...), provides=(...))`` on the
# installer ``install(files, root)``. Published weights carry their own (:mod:`dlapps.models.pretrained`).
RESOURCES: Registry[Resource] = Registry(
    "downloadable resource", DataError, entry=lambda name, install, **info: Resource(name, install=install, **info)
)


@dataclass(frozen=True)
class Need:
    """Something a run reads from the data root: present when any of ``paths`` exists; ``resource`` fetches it
    (None: nothing can, the user places it)."""

    what: str
    paths: tuple[Path, ...]
    resource: Resource | None

    def present(self) -> bool:
        return any(p.exists() for p in self.paths)


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e6:.1f} MB"


def ensure(needs: Iterable[Need], root: Path, download: bool, *, progress: bool = True) -> None:
    """Fetch what is missing when ``download``; else (or for what no download provides) raise one
    :class:`DataError` naming everything missing, where it comes from and how to get it."""
    missing = list(dict.fromkeys(n for n in needs if not n.present()))
    if missing:
        check_data_root(root)
    if download:
        fetch([n.resource for n in missing if n.resource], root, progress=progress)
        missing = [n for n in missing if not n.present()]
    if not missing:
        return
    fetchable = list(dict.fromkeys(n.resource for n in missing if n.resource))
    where = f"the data root {root}" if root.is_dir() else f"the data root {root}, which does not exist"
    parts = [f"missing from {where}: " + "; ".join(n.what for n in missing)]
    if fetchable:
        sources = ", ".join(f"{r.name} from {r.source} ({megabytes(r.size)})" for r in fetchable)
        only = " ".join(f"--only {r.name}" for r in fetchable)
        total = megabytes(sum(r.size for r in fetchable))
        parts.append(f"get {sources} with `dlapps fetch --data-root {root} {only}` ({total} in all), or add "
                     "--download; or point --data-root or $DLAPPS_DATA at a folder that holds them")  # fmt: skip
    placed = [n for n in missing if not n.resource]
    if placed:
        parts.append("no public address for " + ", ".join(f"{n.what} (place it at {n.paths[0]})" for n in placed))
    raise DataError("; ".join(parts))


def fetch(resources: Iterable[Resource], root: Path, *, progress: bool = True) -> list[str]:
    """Download and install each resource that is not installed yet; return the names of those fetched."""
    check_data_root(root)
    todo = [r for r in {r.name: r for r in resources}.values() if not r.installed(root)]
    if not todo:
        return []
    staging = root / ".downloads"
    staging.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=True) as bars:
            for resource in todo:
                files = [_download(d, staging, bars) for d in resource.downloads]
                try:
                    resource.install(files, root)
                except (ValueError, KeyError, tarfile.TarError) as exc:
                    raise DataError(
                        f"{resource.name}: the downloaded files do not unpack as published ({exc})"
                    ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # downloaded archives are installed, or refused
    return [r.name for r in todo]


def _download(download: Download, folder: Path, bars: Progress) -> Path:
    """``download`` into ``folder``, checked against its size and checksum; nothing is left when it fails."""
    target = folder / download.filename
    part = target.with_name(target.name + ".part")
    algorithm, expected = download.checksum.split(":")
    digest, received = hashlib.new(algorithm), 0
    address = download.address
    try:
        with urllib.request.urlopen(address, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or download.size)
            task = bars.add_task(download.filename, total=total)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bars.advance(task, len(chunk))
        if received != total:
            raise DataError(f"download of {address} stopped after {received:,} of {total:,} bytes; nothing was kept")
        if digest.hexdigest() != expected:
            raise DataError(
                f"{address} does not match its published {algorithm} checksum ({expected}); the file was removed"
            )
        os.replace(part, target)
        return target
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"could not download {address} ({reason}); nothing was kept") from None
    finally:
        part.unlink(missing_ok=True)


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """An archive written whole or not at all."""
    part = path.with_name(path.name + ".part.npz")
    np.savez(part, **arrays)
    os.replace(part, path)


# --- the course's datasets ---------------------------------------------------------------------------------


_MNIST = torchvision.datasets.MNIST


@RESOURCES.register(
    "mnist", title="MNIST", provides=("mnist_train.npz", "mnist_test.npz"),
    downloads=tuple(Download(_MNIST.mirrors[0] + file, f"md5:{md5}", size) for (file, md5), size
                    in zip(_MNIST.resources, (9_912_422, 28_881, 1_648_877, 4_542), strict=True)),
)  # fmt: skip
def _install_mnist(files: list[Path], root: Path) -> None:
    """The four idx files to ``mnist_train.npz`` and ``mnist_test.npz`` (images N×28×28×1)."""
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    arrays = {}
    for file in files:
        raw = file.with_suffix("")
        raw.write_bytes(gzip.decompress(file.read_bytes()))
        arrays[raw.name] = read_sn3_pascalvincent_tensor(str(raw), strict=False).numpy()
        raw.unlink()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{prefix} images {images.shape} and labels {labels.shape} are not MNIST's")
        classes = np.array([str(i) for i in range(10)])
        _write_npz(root / f"mnist_{split}.npz", images=images[..., None], labels=labels.astype(np.int64),
                   classes=classes)  # fmt: skip


def _install_cifar(
    files: list[Path], root: Path, name: str, label_bytes: int, splits: dict[str, tuple[str, ...]], names_file: str
) -> None:
    """CIFAR's binary distribution to ``<name>_<split>.npz``: each record is its label byte(s) (the last one is
    the class) and 3,072 pixel bytes, channel by channel."""
    with tarfile.open(files[0]) as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}

        def read(member: str) -> bytes:
            return archive.extractfile(members[member]).read()

        classes = np.array([line.strip() for line in read(names_file).decode().splitlines() if line.strip()])
        for split, batches in splits.items():
            records = np.frombuffer(b"".join(read(b) for b in batches), np.uint8)
            if records.size % (label_bytes + 3072):
                raise ValueError(f"{', '.join(batches)}: not whole records of {label_bytes + 3072} bytes")
            records = records.reshape(-1, label_bytes + 3072)
            images = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            labels = records[:, label_bytes - 1].astype(np.int64)
            _write_npz(root / f"{name}_{split}.npz", images=images, labels=labels, classes=classes)


@RESOURCES.register(
    "cifar10", title="CIFAR-10", provides=("cifar10_train.npz", "cifar10_test.npz"),
    downloads=(Download("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                        "md5:c32a1d4ab5d03f1284b67883e8d87530", 170_052_171),),
)  # fmt: skip
def _install_cifar10(files: list[Path], root: Path) -> None:
    batches = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
    _install_cifar(files, root, "cifar10", 1, batches, "batches.meta.txt")


@RESOURCES.register(
    "cifar100", title="CIFAR-100", provides=("cifar100_train.npz", "cifar100_test.npz"),
    downloads=(Download("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                        "md5:03b5dce01913d631647c71ecec9e9cb8", 168_513_733),),
)  # fmt: skip
def _install_cifar100(files: list[Path], root: Path) -> None:
    _install_cifar(files, root, "cifar100", 2, {"train": ("train.bin",), "test": ("test.bin",)}, "fine_label_names.txt")


_IMAGENETTE_URL, _IMAGENETTE_MD5 = torchvision.datasets.Imagenette._ARCHIVES["320px"]  # the smallest ≥ 224 px


@RESOURCES.register(
    "imagenette", title="Imagenette (320 px)", provides=("imagenette/train", "imagenette/val"),
    downloads=(Download(_IMAGENETTE_URL, f"md5:{_IMAGENETTE_MD5}", 341_663_724),),
)  # fmt: skip
def _install_imagenette(files: list[Path], root: Path) -> None:
    """The archive's ``train`` and ``val`` image folders to ``<root>/imagenette/<split>/<wnid>/``."""
    staging = root / ".imagenette.part"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(files[0]) as archive:
        images = [m for m in archive.getmembers() if m.isfile() and m.name.lower().endswith((".jpeg", ".jpg"))]
        archive.extractall(staging, members=images, filter="data")
    tops = list(staging.iterdir()) if staging.is_dir() else []
    if len(tops) != 1 or not all((tops[0] / split).is_dir() for split in ("train", "val")):
        raise ValueError("the archive is not one folder of train/ and val/ image folders")
    top = tops[0]  # imagenette2-320/
    for split in ("train", "val"):
        target = root / "imagenette" / split
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(top / split, target)
    shutil.rmtree(staging, ignore_errors=True)


def weights_resource(name: str, title: str, url: str, sha256: str, size: int, filename: str) -> Resource:
    """A published weights file, installed as ``weights/<filename>``."""

    def install(files: list[Path], root: Path) -> None:
        (root / "weights").mkdir(parents=True, exist_ok=True)
        shutil.move(files[0], root / "weights" / filename)

    return Resource(
        name, f"{title} weights", (Download(url, f"sha256:{sha256}", size),), (f"weights/{filename}",), install
    )


def provider(dataset: str, split: str) -> Resource | None:
    """The resource that installs ``<dataset>_<split>.npz`` or ``<dataset>/<split>``, if any."""
    wanted = {f"{dataset}_{split}.npz", f"{dataset}/{split}"}
    return next((r for r in RESOURCES.values() if wanted & set(r.provides)), None)
