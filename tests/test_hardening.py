"""Faults a user can cause or meet: each is one line and exit status 2, and nothing computed before is lost."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dlapps.attacks import attack
from dlapps.data import load_arrays
from dlapps.errors import AttackError, CheckpointError, ConfigError, DataError
from dlapps.experiments import STUDIES
from dlapps.models import create_model, read_weights
from dlapps.report.io import read_json
from dlapps.train import ClassifierRecipe
from helpers import assert_one_line_error, chromium, dlapps_main, epochs_trained

MLP = ["--profile", "quick", "--no-progress", "--set", "depths=2", "--set", "gradient_depth=2", "--set", "seeds=1",
       "--set", "train_subset=300", "--set", "test_subset=100", "--set", "train.epochs=1", "--set", "gradient_batches=1"]  # fmt: skip


def _npz(path: Path, n: int = 40, shape=(8, 8, 3), classes=("a", "b")) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    np.savez(path, images=images, labels=rng.integers(0, len(classes), n), classes=np.array(classes))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path, data_root):
    """A finished residual-mlp run on MNIST, and a snapshot of everything it wrote."""
    out, epochs = tmp_path / "mlp", tmp_path / "epochs"
    result = dlapps_main("run", "residual-mlp", *MLP, "--out", str(out), data_root=data_root, epochs=epochs)
    assert result.returncode == 0, result.stderr
    assert len(epochs_trained(epochs)) == 3  # one epoch of each of the three nets
    return out, _snapshot(out)


# --- output folders and the environment --------------------------------------------------------------------


def test_output_folders_that_cannot_be_written(tmp_path, data_root):
    (tmp_path / "file").write_text("in the way")
    epochs = tmp_path / "epochs"
    for out, fragment in ((tmp_path / "file", "cannot write results to"), (tmp_path / "file" / "below", "Not a directory"),
                          (tmp_path / ("x" * 300), "File name too long")):  # fmt: skip
        result = dlapps_main("run", "residual-mlp", *MLP, "--out", str(out), data_root=data_root, epochs=epochs)
        assert_one_line_error(result, fragment)
    assert epochs_trained(epochs) == [] and not (tmp_path / "models").exists()  # refused before any training


def _children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="a killed run's side-by-side workers: Linux /proc")
def test_a_second_run_on_the_same_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, data_root):
    out = tmp_path / "shared"
    env = {**os.environ, "DLAPPS_DATA": str(data_root)}
    slow = [
        sys.executable,
        "-m",
        "dlapps",
        "run",
        "residual-mlp",
        *MLP,
        "--set",
        "train.epochs=5000",
        "--out",
        str(out),
    ]
    first = subprocess.Popen(slow, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = dlapps_main("run", "residual-mlp", *MLP, "--out", str(out), data_root=data_root)
    assert_one_line_error(second, f"another dlapps run (pid {first.pid}) is writing to {out}")
    deadline = time.monotonic() + 60
    while not (workers := _children(first.pid)) and time.monotonic() < deadline:  # its runs train side by side
        time.sleep(0.05)
    assert workers
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / ".lock").read_text() == str(first.pid)  # left behind by the killed run
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # the workers died with it
    third = dlapps_main("run", "residual-mlp", *MLP, "--out", str(out), data_root=data_root)
    assert third.returncode == 0, third.stderr
    assert not (out / ".lock").exists() and (out / "results.json").is_file()


# --- image folders with bad files ---------------------------------------------------------------------------


def _images(folder: Path) -> Path:
    from PIL import Image

    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (8, 8), color=(20 * i, 0, 0) if name == "a" else (0, 0, 20 * i)).save(
                folder / name / f"{i}.png"
            )
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["not-an-image", "truncated", "empty-class"])
def test_image_folders_with_bad_files(fault, tmp_path, data_root):
    folder = _images(tmp_path / "images")
    out = tmp_path / "out"
    args = ["run", "fgsm", "--profile", "quick", "--no-progress", "--out", str(out), "--set", f"dataset={folder}",
            "--set", "model=small_cnn", "--set", "model.weights=" + str(_small_cnn_weights(tmp_path)),
            "--set", "epsilons=4", "--set", "steps=1", "--set", "method=fgsm", "--set", "examples=1"]  # fmt: skip
    result = dlapps_main(*args, data_root=data_root)
    assert result.returncode == 0, result.stderr
    before = _snapshot(out)
    if fault == "not-an-image":
        (folder / "a" / "3.png").write_text("not a picture")
        fragment = "3.png is not a readable image"
    elif fault == "truncated":
        data = (folder / "b" / "4.png").read_bytes()
        (folder / "b" / "4.png").write_bytes(data[: len(data) // 2])
        fragment = "4.png is not a readable image"
    else:
        (folder / "c").mkdir()
        fragment = "is not a readable image folder"
    assert_one_line_error(dlapps_main(*args, data_root=data_root), fragment)
    assert _snapshot(out) == before


def _small_cnn_weights(folder: Path) -> Path:
    path = folder / "small_cnn.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_file(create_model("small_cnn", num_classes=2, in_shape=(3, 8, 8)).state_dict(), str(path))
    return path


# --- damaged run state -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_damaged_cache_state_is_set_aside_and_recomputed(finished, data_root):
    out, before = finished
    models = out.parent / "models"
    checkpoint = sorted(models.glob("*.safetensors"))[0]
    tensors = {"model.w": torch.zeros(1)}
    save_file(tensors, str(checkpoint), metadata={"dlapps": "{not json"})  # a malformed header
    (out / "results.json").write_text('{"study": "residual-mlp", "config": [1, 2]}')  # valid JSON, wrong shape
    epochs = out.parent / "epochs-again"
    result = dlapps_main("run", "residual-mlp", *MLP, "--out", str(out), data_root=data_root, epochs=epochs)
    assert result.returncode == 0, result.stderr
    assert (models / (checkpoint.name + ".damaged")).is_file()  # kept for a look, and the model trained again
    assert len(epochs_trained(epochs)) == 1  # that one alone
    again, earlier = read_json(out / "results.json"), json.loads(before["results.json"])
    assert [r["test_acc"] for r in again["runs"]] == [r["test_acc"] for r in earlier["runs"]]


def test_a_damaged_checkpoint_header_is_named():
    from dlapps.train import load_checkpoint

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"dlapps-broken-{os.getpid()}.safetensors"
    save_file({"model.w": torch.zeros(1)}, str(path), metadata={"dlapps": "[1, 2"})
    try:
        with pytest.raises(CheckpointError, match="has a damaged dlapps header; delete the file"):
            load_checkpoint(path, torch.nn.Linear(1, 1))
    finally:
        path.unlink()


# --- hostile archives ----------------------------------------------------------------------------------------


def _forged_npz(path: Path, header: dict) -> Path:
    """An archive whose images member has a hand-written .npy header (and almost no data)."""
    text = repr(header).encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + b"\x00" * 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", member)
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(2, np.int64))
        archive.writestr("labels.npy", buffer.getvalue())
    return path


def test_hostile_archive_headers(tmp_path):
    huge = _forged_npz(
        tmp_path / "huge_test.npz", {"descr": "|u1", "fortran_order": False, "shape": (10**6, 1024, 1024, 3)}
    )
    with pytest.raises(DataError, match=r"images.npy claims 3,145,728,000,000 bytes but holds .* damaged or forged"):
        load_arrays(str(huge), "test")
    long = tmp_path / "long_test.npz"
    with zipfile.ZipFile(long, "w") as archive:
        text = repr({"descr": "|u1", "fortran_order": False, "shape": (1,), "x": "a" * 20_000}).encode("latin1") + b"\n"
        archive.writestr("images.npy", b"\x93NUMPY\x02\x00" + len(text).to_bytes(4, "little") + text + b"\x00")
    with pytest.raises(DataError) as error:
        load_arrays(str(long), "test")
    assert (
        "unreadable" in str(error.value) and "allow_pickle" not in str(error.value) and "trust" not in str(error.value)
    )


# --- numerical divergence ------------------------------------------------------------------------------------


def test_a_diverging_training_stops_in_its_epoch_and_caches_nothing(tmp_path, data_root):
    """A deep residual MLP on real MNIST with SGD at lr 10: the loss overflows in the first epoch."""
    out = tmp_path / "models"
    result = dlapps_main("train", "--model", "residual_mlp", "--dataset", "mnist", "--out", str(out), "--no-progress",
                         "--set", 'hparams={"depth": 32, "width": 16}', "--set", "train_subset=2000",
                         "--set", "augment=false", "--set", "train.optimizer=sgd", "--set", "train.lr=10",
                         "--set", "train.momentum=0.9", data_root=data_root)  # fmt: skip
    assert_one_line_error(result, "training diverged: the loss is not a finite number in epoch 1, step 2 of 16",
                          "train.lr=10", "nothing of this epoch was kept")  # fmt: skip
    assert not list(out.glob("*.safetensors")) and not list(out.glob("*.json"))


def test_values_that_are_not_finite_numbers_are_null_in_strict_json_with_a_note(tmp_path):
    from dlapps.report.io import write_json

    write_json(tmp_path / "r.json", {"rows": [{"loss": 0.5}, {"loss": float("nan")}], "best": float("inf"), "n": 2})
    assert read_json(tmp_path / "r.json") == {"rows": [{"loss": 0.5}, {"loss": None}], "best": None, "n": 2,
                                              "non_finite_as_null": ["rows[1].loss (nan)", "best (inf)"]}  # fmt: skip


def test_a_cached_record_reads_back_as_it_was_computed_non_finite_numbers_and_all(tmp_path):
    """A run gets the record a rerun will find in the cache (so a report of numbers that are not finite, an ECE
    interval of NaN, is written alike from both), though the file is strict JSON."""
    import math

    from dlapps.report.runs import RunCache

    computed = {"rows": [{"loss": float("nan")}, {"loss": 0.5}], "best": float("-inf"), "pair": (1, 2),
                "by name": {"blocks.11.norm1": float("inf"), "x[0]": None}}  # fmt: skip
    first = RunCache(tmp_path).get_or_compute("run", {"seed": 0}, lambda key: computed)
    rerun = RunCache(tmp_path)
    again = rerun.get_or_compute("run", {"seed": 0}, lambda key: pytest.fail("computed again"))
    assert rerun.hits == 1 and json.dumps(again) == json.dumps(first)  # NaN written as NaN by json.dumps
    assert math.isnan(again["rows"][0]["loss"]) and again["best"] == -math.inf and again["pair"] == [1, 2]
    assert again["by name"] == {"blocks.11.norm1": math.inf, "x[0]": None}
    (path,) = tmp_path.glob("run-*.json")
    assert read_json(path)["by name"]["blocks.11.norm1"] is None  # the file itself is strict JSON


@pytest.mark.parametrize(("setting", "fragment"), [("train.lr=1e300", "lr=1e+300 is no learning rate"),
                                                   ("train.lr=inf", "train.lr='inf' is not a finite number")])  # fmt: skip
def test_learning_rates_no_run_can_use_are_refused(setting, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("+", r"\+")):
        STUDIES["residual-mlp"].config("quick", [setting])


# --- settings and messages -----------------------------------------------------------------------------------


def test_pairs_of_hyper_parameters_are_a_json_object():
    from dlapps.config import apply_overrides

    recipe = apply_overrides(ClassifierRecipe("small_cnn"), ['hparams={"hidden": 32, "channels": [8, 16]}'])
    assert recipe.hparams == (("channels", (8, 16)), ("hidden", 32))
    with pytest.raises(ConfigError, match="hparams takes a JSON object"):
        apply_overrides(ClassifierRecipe("small_cnn"), ["hparams=width=3"])


def test_messages_name_what_is_wrong_and_never_advise_unsafe_loading(tmp_path, resnet20):
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(AttackError, match=r"labels must be an int64 tensor of shape \(2,\), got torch.int32 \(2,\)"):
        attack(resnet20, x, torch.zeros(2, dtype=torch.int32), eps=0.01)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callback": shutil.rmtree}, evil)
    with pytest.raises(CheckpointError) as error:
        read_weights(evil)
    assert "weights_only=False" not in str(error.value) and "safetensors" in str(error.value)


# --- user strings in the HTML report ------------------------------------------------------------------------

HOSTILE = "<img src=x onerror=document.title='pwned'>"


@pytest.mark.slow
def test_hostile_names_stay_text_in_the_html_report(tmp_path, data_root):
    """Dataset, class, OOD-set and model names that are HTML and script: shown as text, nothing runs."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = chromium()
    folder = tmp_path / HOSTILE
    folder.mkdir()
    classes = ("<script>document.title='pwned'</script>", "<b onmouseover=alert(1)>bold</b>")
    for split in ("train", "test"):
        _npz(folder / f"evil_{split}.npz", n=60, classes=classes)
    ood = _npz(folder / "<svg onload=alert(2)>.npz", n=30)
    weights = tmp_path / "<iframe src=javascript:alert(3)>.safetensors"
    shutil.copy(_small_cnn_weights(tmp_path), weights)
    out = tmp_path / "audit"
    settings = [f"model.weights={weights}", "attack_images=8", "epsilons=2", "faithfulness_images=8",
                "deletion_images=2", "sanity_images=2", "id_subset=30", "fit_subset=50", "detectors=msp,energy"]  # fmt: skip
    result = dlapps_main("audit", "--model", "small_cnn", "--data", str(folder / "evil_train.npz"), "--ood", str(ood),
                         "--out", str(out), "--no-progress", *[a for s in settings for a in ("--set", s)],
                         data_root=data_root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    page_html = (out / "report.html").read_text()
    assert "Content-Security-Policy" in page_html and "<script" not in page_html and "<img src=x" not in page_html
    dialogs, errors = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        title = page.title()
        counts = page.evaluate(
            "['script', 'iframe', 'svg', 'img[src=x]', 'b[onmouseover]'].map(s => document.querySelectorAll(s).length)"
        )
        text = page.evaluate("document.body.innerText")
        browser.close()
    assert title != "pwned" and not dialogs and not errors and counts == [0, 0, 0, 0, 0]
    for literal in (HOSTILE, classes[0], "<svg onload=alert(2)>", "<iframe src=javascript:alert(3)>"):
        assert literal in text
