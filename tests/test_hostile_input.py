"""Input a user can hand dlapps, and machines it can meet, that once ended in a traceback: a dataset of a single
class, an image over Pillow's decompression-bomb limit, a write that meets a full disk or a file-size limit, a
data root that is a file. Each is one line naming the file (exit status 2 from the command line), checked
where it arises for every reader and writer, and nothing written before is lost."""

import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from dlapps.data import find_datasets, load_arrays
from dlapps.data.downloads import fetch
from dlapps.data.ood import OodRequest, load_ood_set
from dlapps.data.sources import read_image
from dlapps.errors import DataError, OutputError
from dlapps.report.io import failure_reason, save_figure, write_csv, write_json, write_text
from helpers import assert_one_line_error, dlapps_main

SINGLE = "a classifier needs at least 2 classes"
BOMB = "is too large to decode safely"


def _archive(path: Path, classes=("a", "b"), n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(n) % len(classes)
    np.savez(path, images=images, labels=labels, classes=np.array(classes))
    return path


def _images(folder: Path, n: int = 6, suffix: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), color=(30 * i, 0, 0)).save(folder / f"{i}{suffix}", format="PNG")
    return folder


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` pixels in a few bytes: all Pillow reads before its bomb check."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def _imagenette(root: Path, wnids: tuple[str, ...]) -> Path:
    """torchvision's own Imagenette layout, ``imagenette2/<split>/<wnid>/*.JPEG``, of tiny images."""
    for split in ("train", "val"):
        for wnid in wnids:
            _images(root / "imagenette2" / split / wnid, suffix=".JPEG")
    return root


# --- 1. a dataset of a single class -------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["archive", "folder", "torchvision"])
def test_a_dataset_of_a_single_class_is_refused_at_load_by_every_reader(reader, tmp_path):
    if reader == "archive":
        for split in ("train", "test"):
            _archive(tmp_path / f"one_{split}.npz", ("a",))
        name = where = str(tmp_path / "one_train.npz")
        held = "24 images of a single class ('a')"
    elif reader == "folder":
        for split in ("train", "test"):
            _images(tmp_path / "one" / split / "a")
        name, where = str(tmp_path / "one"), str(tmp_path / "one" / "train")
        held = "6 images of a single class ('a')"
    else:
        _imagenette(tmp_path, ("n01440764",))
        name, where = "torchvision:Imagenette", f"torchvision Imagenette (train) at {tmp_path}"
        held = "6 images of a single class ('tench')"
    with pytest.raises(DataError) as error:
        load_arrays(name, "train", tmp_path)
    assert str(error.value).startswith(f"{where} holds {held}; {SINGLE}")


def test_a_single_class_is_still_an_ood_set(tmp_path):
    """An OOD set's labels are never used: a folder or archive of one class is a fine one."""
    data = load_ood_set(str(_archive(tmp_path / "mine.npz", ("mine",))), OodRequest(root=tmp_path))
    assert len(data) == 24 and data.classes == ("mine",)


@pytest.mark.slow
def test_the_command_line_names_a_single_class_dataset(tmp_path, data_root):
    archive = _archive(tmp_path / "one_train.npz", ("a",))
    _archive(tmp_path / "one_test.npz", ("a",))
    trained = dlapps_main("train", "--model", "small_cnn", "--dataset", str(archive), "--out", str(tmp_path / "models"),
                     "--no-progress")  # fmt: skip
    assert_one_line_error(trained, f"{archive} holds 24 images of a single class ('a'); {SINGLE}")
    # residual-mlp once trained on it and divided by the zero gradients of a one-output cross-entropy
    study = dlapps_main("run", "residual-mlp", "--profile", "quick", "--no-progress", "--out", str(tmp_path / "mlp"),
                   "--set", f"dataset={archive}", "--set", "depths=2", "--set", "seeds=1")  # fmt: skip
    assert_one_line_error(study, f"{archive} holds 24 images of a single class ('a'); {SINGLE}")
    folder = _images(tmp_path / "pictures" / "a").parent
    audited = dlapps_main("audit", "--model", "small_cnn", "--data", str(folder), "--out", str(tmp_path / "audit"),
                     "--no-progress", data_root=data_root)  # fmt: skip
    assert_one_line_error(audited, f"{folder} holds 6 images of a single class ('a'); {SINGLE}")


# --- 2. images Pillow cannot or will not decode ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        ("bomb", f"{BOMB} (200,000,000 pixels, over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} against"),
        ("over-the-limit", f"{BOMB} (120,000,000 pixels"),  # Pillow only warns below twice its limit, and decodes
        ("truncated", "is not a readable image (OSError: image file is truncated"),
        ("not-an-image", "is not a readable image (not a format Pillow knows)"),
        ("empty", "is not a readable image (not a format Pillow knows)"),
    ],
)
def test_every_pillow_failure_is_one_line_naming_the_file(fault, fragment, tmp_path):
    path = tmp_path / "picture.png"
    if fault == "bomb":
        _png_header(path, 20_000, 10_000)
    elif fault == "over-the-limit":
        _png_header(path, 12_000, 10_000)
    elif fault == "truncated":
        Image.effect_noise((64, 64), 50).save(path)
        path.write_bytes(path.read_bytes()[:400])
    else:
        path.write_bytes(b"" if fault == "empty" else b"not a picture")
    with pytest.raises(DataError) as error:
        read_image(path)
    message = str(error.value)
    assert message.startswith(f"{path} ") and fragment in message and "\n" not in message


def test_image_folders_and_torchvision_datasets_read_images_through_the_same_reader(tmp_path):
    folder = tmp_path / "pictures"
    for name in ("a", "b"):
        _images(folder / "train" / name)
    bomb = _png_header(folder / "train" / "b" / "huge.png", 20_000, 10_000)
    with pytest.raises(DataError, match=re.escape(f"{bomb} {BOMB}")):
        load_arrays(str(folder), "train")
    root = _imagenette(tmp_path / "root", ("n01440764", "n02102040"))
    bomb = _png_header(root / "imagenette2" / "val" / "n02102040" / "huge.JPEG", 20_000, 10_000)
    with pytest.raises(DataError, match=re.escape(f"{bomb} {BOMB}")):
        load_arrays("torchvision:Imagenette", "val", root)
    bomb.unlink()
    read = load_arrays("torchvision:Imagenette", "val", root)
    assert read.images.shape == (12, 3, 8, 8) and read.images[0, 0, 0, 0] == 0 and read.images[1, 0, 0, 0] == 30


@pytest.mark.slow
def test_the_command_line_names_an_image_over_the_bomb_limit(tmp_path):
    folder = tmp_path / "pictures"
    for split in ("train", "test"):
        for name in ("a", "b"):
            _images(folder / split / name)
    bomb = _png_header(folder / "train" / "a" / "huge.png", 20_000, 10_000)
    args = [
        "train",
        "--model",
        "small_cnn",
        "--dataset",
        str(folder),
        "--out",
        str(tmp_path / "models"),
        "--no-progress",
    ]
    assert_one_line_error(dlapps_main(*args), f"{bomb} {BOMB} (200,000,000 pixels")


# --- 3. writes that meet a full disk or a file-size limit -------------------------------------------------------

_LIMITED_WRITES = r"""
import json, resource, signal, sys
from pathlib import Path

import torch
from matplotlib.figure import Figure

from dlapps.errors import OutputError
from dlapps.report.io import save_figure, write_csv, write_json, write_text
from dlapps.train import save_checkpoint


def figure(noise):
    drawn = Figure(figsize=(6, 6))
    drawn.add_subplot().imshow(torch.rand(300, 300).numpy() if noise else [[0, 1], [1, 0]])
    return drawn


folder = Path(sys.argv[1])
writers = {  # (a small file, then a large one in its place)
    "model.safetensors": lambda path, large: save_checkpoint(path, torch.nn.Linear(200 if large else 2, 200)),
    "results.json": lambda path, large: write_json(path, {"values": list(range(40_000 if large else 3))}),
    "report.md": lambda path, large: write_text(path, "x" * (200_000 if large else 10)),
    "results.csv": lambda path, large: write_csv(path, [{"row": i} for i in range(40_000 if large else 3)]),
    "figure.png": lambda path, large: save_figure(figure(large), path),
}
for name, write in writers.items():
    write(folder / name, False)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
messages = {}
for name, write in [*writers.items(), (".staging-12/results.json", writers["results.json"])]:
    try:
        write(folder / name, True)
        messages[name] = "written"
    except OutputError as exc:
        messages[name] = str(exc)
print(json.dumps(messages))
"""


def test_a_file_size_limit_is_one_line_per_writer_and_the_file_before_is_intact(tmp_path):
    """A real limit (RLIMIT_FSIZE, SIGXFSZ ignored) in a subprocess: each writer fails with ``file too large``
    naming its file, the small file written before is byte for byte as it was, and no temporary file is left."""
    limit = 64_000
    result = subprocess.run([sys.executable, "-c", _LIMITED_WRITES, str(tmp_path), str(limit)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    messages = json.loads(result.stdout.strip().splitlines()[-1])
    kinds = {"model.safetensors": "the checkpoint", "results.json": "the results file", "report.md": "the report",
             "results.csv": "the results table", "figure.png": "the figure",
             ".staging-12/results.json": "the results file"}  # fmt: skip
    for name, kind in kinds.items():
        shown = tmp_path / name.removeprefix(".staging-12/")  # where a staged file was going: its final place
        assert messages[name] == (
            f"could not write {kind} {shown} (file too large); what was written before is intact, and a rerun "
            "resumes from it"
        )
    kept = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()}
    assert set(kept) == {"model.safetensors", "results.json", "report.md", "results.csv", "figure.png"}
    assert all(size < limit for size in kept.values())  # the small files, complete (read back below)
    assert json.loads((tmp_path / "results.json").read_text()) == {"values": [0, 1, 2]}
    assert (tmp_path / "report.md").read_text() == "x" * 10 and Image.open(tmp_path / "figure.png").size
    assert not list((tmp_path / ".staging-12").iterdir())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="a full disk: Linux's /dev/full")
def test_a_full_disk_is_one_line_and_the_file_before_is_intact(tmp_path):
    """The temporary file a write goes to, linked to /dev/full: the kernel's own ``no space left on device``.
    (safetensors replaces the link rather than writing through it: its errors are read in the test below.)"""
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1])
    for path, write, kind in (
        (tmp_path / "results.json", lambda p: write_json(p, {"x": 1}), "the results file"),
        (tmp_path / "report.md", lambda p: write_text(p, "report"), "the report"),
        (tmp_path / "results.csv", lambda p: write_csv(p, [{"x": 1}]), "the results table"),
        (tmp_path / "figure.png", lambda p: save_figure(figure, p), "the figure"),
    ):
        write(path)
        before = path.read_bytes()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.symlink_to("/dev/full")
        with pytest.raises(OutputError) as error:
            write(path)
        assert str(error.value).startswith(f"could not write {kind} {path} (no space left on device); ")
        assert path.read_bytes() == before and not tmp.is_symlink()


def test_write_failures_are_said_in_words():
    from safetensors import SafetensorError

    assert failure_reason(OSError(28, "No space left on device")) == "no space left on device"
    assert failure_reason(SafetensorError("Error while serializing: I/O error: File too large (os error 27)")) == (
        "file too large"
    )


def _limited(size: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return apply


@pytest.mark.slow
def test_the_command_line_names_a_checkpoint_over_the_file_size_limit_and_keeps_the_one_before(tmp_path):
    data, out = _archive(tmp_path / "two_train.npz"), tmp_path / "models"
    _archive(tmp_path / "two_test.npz")
    args = ["train", "--model", "small_cnn", "--dataset", str(data), "--out", str(out), "--no-progress"]
    first = dlapps_main(*args, "--set", "train.epochs=1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    checkpoint = next(name for name in before if name.endswith(".safetensors"))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DLAPPS_DATA", None)
    limited = subprocess.run([sys.executable, "-m", "dlapps", *args, "--set", "train.epochs=2"], capture_output=True,
                             text=True, env=env, timeout=600, preexec_fn=_limited(len(before[checkpoint]) // 4))  # fmt: skip
    assert_one_line_error(limited, f"could not write the checkpoint {out}/", ".safetensors (file too large)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, no temporary file left
    again = dlapps_main(*args, "--set", "train.epochs=2", XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert again.returncode == 0, again.stderr


# --- 4. a data root that is a file ---------------------------------------------------------------------------


def test_a_data_root_that_is_a_file_is_called_one(tmp_path):
    root = tmp_path / "data"
    root.write_text("not a folder")
    expected = f"the data root {root} is a file, not a folder; point --data-root or $DLAPPS_DATA at the folder"
    for read in (
        lambda: load_arrays("mnist", "test", root),
        lambda: load_arrays("imagenette", "val", root),
        lambda: load_arrays("torchvision:SVHN", "test", root),
        lambda: fetch(["mnist"], root, progress=False),
        lambda: find_datasets(root),
    ):
        with pytest.raises(DataError) as error:
            read()
        assert str(error.value).startswith(expected)
    assert len(load_arrays(str(_archive(tmp_path / "mine_test.npz")), "test", root)) == 24  # a path needs no root


@pytest.mark.slow
def test_the_command_line_names_a_data_root_that_is_a_file(tmp_path):
    root = tmp_path / "data"
    root.write_text("not a folder")
    expected = f"the data root {root} is a file, not a folder"
    train = ["train", "--model", "small_cnn", "--dataset", "mnist", "--out", str(tmp_path / "models"), "--no-progress"]
    assert_one_line_error(dlapps_main(*train, "--data-root", str(root)), expected)
    assert_one_line_error(dlapps_main("run", "residual-mlp", "--out", str(tmp_path / "mlp"), "--no-progress",
                                 data_root=root), expected)  # fmt: skip
