import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2

from dlapps.data import find_datasets, load_arrays, resolve_data_root
from dlapps.data.datasets import fakedata_arrays
from dlapps.errors import DataError


def _write_npz(path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    np.savez(path, images=images, labels=labels, classes=np.array(classes))
    return path


def _mnist_like(n: int = 20, shape=(28, 28, 1), label_max: int = 9):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, label_max + 1, size=n).astype(np.int64)
    return images, labels, [str(i) for i in range(10)]


def test_real_mnist_archive(mnist_test):
    assert mnist_test.images.shape == (10_000, 1, 28, 28) and mnist_test.images.dtype == torch.uint8
    assert mnist_test.labels.dtype == torch.int64
    assert torch.bincount(mnist_test.labels).tolist()[:2] == [980, 1135]  # the published MNIST test counts
    assert mnist_test.classes == tuple(str(i) for i in range(10))
    assert mnist_test.source.endswith("mnist_test.npz")


def test_real_cifar100_archive_is_nchw(data_root):
    cifar100 = load_arrays("cifar100", "test", data_root)
    assert cifar100.image_shape == (3, 32, 32) and len(cifar100.classes) == 100
    assert torch.bincount(cifar100.labels).unique().tolist() == [100]
    with np.load(data_root / "cifar100_test.npz") as raw:  # NHWC on disk, NCHW in memory
        assert np.array_equal(cifar100.images[5].permute(1, 2, 0).numpy(), raw["images"][5])


def test_torchvision_mnist_layout(tmp_path, mnist_test):
    """A root holding torchvision's raw MNIST files (and no archive) is read through torchvision."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = mnist_test.images[:50, 0].numpy()
    labels = mnist_test.labels[:50].numpy().astype(np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 50, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 50) + labels.tobytes())
    loaded = load_arrays("mnist", "test", tmp_path)
    assert loaded.source.startswith("torchvision MNIST")
    assert torch.equal(loaded.images, mnist_test.images[:50]) and torch.equal(loaded.labels, mnist_test.labels[:50])


def test_archive_takes_precedence_and_is_validated(tmp_path):
    images, labels, classes = _mnist_like()
    _write_npz(tmp_path / "mnist_train.npz", images, labels, classes)
    loaded = load_arrays("mnist", "train", tmp_path)
    assert loaded.images.shape == (20, 1, 28, 28)
    assert torch.equal(loaded.images[3, 0], torch.from_numpy(images[3, :, :, 0]))


def test_imagenette_image_folder(data_root):
    """Read like torchvision's ImageFolder (same order, same pixels), and only the asked-for subset is decoded."""
    reference = torchvision.datasets.ImageFolder(str(data_root / "imagenette" / "val"), transform=v2.PILToTensor())
    some = load_arrays("imagenette", "val", data_root, limit=6, seed=3)
    assert some.images.shape == (6, 3, 224, 224) and len(some.classes) == 10 and some.classes[0] == "n01440764"
    chosen = torch.randperm(1000, generator=torch.Generator().manual_seed(3))[:6].tolist()
    for i, index in enumerate(chosen):
        image, label = reference[index]
        assert torch.equal(some.images[i], image) and some.labels[i] == label


def test_fakedata_matches_torchvision_and_is_reproducible():
    first, second = fakedata_arrays("test", size=16), fakedata_arrays("test", size=16)
    assert first.images.shape == (16, 3, 32, 32) and torch.equal(first.images, second.images)
    reference = torchvision.datasets.FakeData(16, (3, 32, 32), 10, transform=v2.PILToTensor(), random_offset=0)
    image, label = reference[7]
    assert torch.equal(first.images[7], image) and first.labels[7] == label
    assert not torch.equal(fakedata_arrays("train", size=16).images, first.images)


def test_subset_is_seeded_random_and_capped(mnist_test):
    a, b = mnist_test.subset(100, seed=1), mnist_test.subset(100, seed=1)
    assert len(a) == 100 and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, mnist_test.labels[:100])
    assert mnist_test.subset(None) is mnist_test and mnist_test.subset(10**6) is mnist_test


def test_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DLAPPS_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("DLAPPS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root() == tmp_path / "cache" / "dlapps" / "data"


def test_find_datasets_reports_what_exists(data_root):
    rows = {(r.name, r.split): r for r in find_datasets(data_root)}
    assert rows["mnist", "train"].found and rows["cifar10", "test"].found
    assert rows["imagenette", "val"].found and rows["imagenette", "val"].where.endswith("imagenette/val")
    assert not rows["cifar100", "train"].found and "cifar100_train.npz" in rows["cifar100", "train"].where


# --- every validation error is one line that names the problem ------------------------------------------


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_root(tmp_path):
    message = _error(load_arrays, "mnist", "train", tmp_path / "nowhere")
    assert "data root" in message and "nowhere" in message and "--download" in message


def test_missing_files_lists_places_looked(tmp_path):
    message = _error(load_arrays, "cifar10", "test", tmp_path)
    assert "cifar10_test.npz" in message and "cifar-10-batches-py" in message and "--download" in message
    assert "imagenette/val" in _error(load_arrays, "imagenette", "val", tmp_path)


def test_truncated_archive(tmp_path, data_root):
    good = (data_root / "mnist_test.npz").read_bytes()
    (tmp_path / "mnist_test.npz").write_bytes(good[: len(good) // 2])
    assert "unreadable" in _error(load_arrays, "mnist", "test", tmp_path)


def test_corrupt_member(tmp_path):
    images, labels, classes = _mnist_like()
    path = _write_npz(tmp_path / "mnist_test.npz", images, labels, classes)
    data = bytearray(path.read_bytes())
    start = data.find(b"images.npy") + 200  # flip bytes inside the stored images array
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is not None  # the CRC no longer matches
    assert "unreadable" in _error(load_arrays, "mnist", "test", tmp_path)


def test_an_archive_is_decoded_once_until_it_changes(tmp_path):
    images, labels, classes = _mnist_like()
    _write_npz(tmp_path / "mnist_test.npz", images, labels, classes)
    first = load_arrays("mnist", "test", tmp_path)
    assert load_arrays("mnist", "test", tmp_path).images is first.images  # shared, not decoded again
    assert len(load_arrays("mnist", "test", tmp_path, limit=5)) == 5  # a subset of the same decoded split
    _write_npz(tmp_path / "mnist_test.npz", images[:12], labels[:12], classes)
    assert len(load_arrays("mnist", "test", tmp_path)) == 12  # the new file, not the remembered one


def test_preloaded_archives_are_read_from_memory_and_no_thread_is_left(tmp_path, monkeypatch):
    """What ``reproduce`` and ``run`` decode up front (several archives at once) is what the datasets then
    return; nothing else is decoded, and the decoding threads are gone (workers are forked afterwards)."""
    import threading

    from dlapps.data import sources

    images, labels, classes = _mnist_like()
    for split in ("train", "test"):
        _write_npz(tmp_path / f"mnist_{split}.npz", images, labels, classes)
    (tmp_path / "notes.txt").write_text("not an archive")
    decoded = []
    read = sources.read_archive
    monkeypatch.setattr(sources, "read_archive", lambda path: decoded.append(path.name) or read(path))
    threads = threading.active_count()
    sources.preload_archives([tmp_path / "mnist_train.npz", tmp_path / "mnist_test.npz", tmp_path / "notes.txt",
                              tmp_path / "missing.npz", tmp_path / "mnist_test.npz"])  # fmt: skip
    assert sorted(decoded) == ["mnist_test.npz", "mnist_train.npz"] and threading.active_count() == threads
    monkeypatch.undo()
    hits = sources._read_archive.cache_info().hits
    assert torch.equal(load_arrays("mnist", "train", tmp_path).images, torch.from_numpy(images).permute(0, 3, 1, 2))
    load_arrays("mnist", "test", tmp_path)
    assert sources._read_archive.cache_info().hits == hits + 2  # both from memory


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (32, 32, 3)}, "images are (3, 32, 32) (C, H, W), but mnist images are (1, 28, 28)"),
        ({"label_max": 12}, "outside 0..9"),
    ],
)
def test_wrong_content(tmp_path, kwargs, message):
    images, labels, classes = _mnist_like(**kwargs)
    _write_npz(tmp_path / "mnist_test.npz", images, labels, classes)
    assert message in _error(load_arrays, "mnist", "test", tmp_path)


def test_wrong_dtype_class_count_and_members(tmp_path):
    images, labels, classes = _mnist_like()
    _write_npz(tmp_path / "mnist_test.npz", images.astype(np.float32), labels, classes)
    assert "must be uint8" in _error(load_arrays, "mnist", "test", tmp_path)
    _write_npz(tmp_path / "mnist_test.npz", images, labels, classes[:5])
    assert "5 class names" in _error(load_arrays, "mnist", "test", tmp_path)
    np.savez(tmp_path / "mnist_test.npz", images=images)
    assert "lacks the arrays classes, labels" in _error(load_arrays, "mnist", "test", tmp_path)


def test_unknown_names(tmp_path):
    assert "unknown dataset 'nosuchdata'; registered: mnist, cifar10" in _error(load_arrays, "nosuchdata", "train")
    assert "splits: train, test" in _error(load_arrays, "mnist", "valid", tmp_path)


def test_image_folder_with_wrong_class_count(tmp_path):
    for name in ("n01", "n02"):
        (tmp_path / "imagenette" / "val" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imagenette" / "val" / name / "a.png")
    assert "2 class names, but imagenette has 10 classes" in _error(load_arrays, "imagenette", "val", tmp_path)
