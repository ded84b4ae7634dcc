"""``reproduce``: runs studies once, reuses them after, and writes a self-contained HTML report."""

import base64
import dataclasses
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from PIL import Image

from dlapps.errors import ConfigError
from dlapps.experiments import get_study
from dlapps.experiments.base import RunContext
from dlapps.experiments.reproduce import reproduce
from dlapps.report.html import MissingImageError, markdown_to_html
from dlapps.report.io import read_json
from figures_check import assert_figures, assert_line, kept_figures, spying
from helpers import chromium

TINY_MLP = ["depths=2", "gradient_depth=2", "train_subset=500", "test_subset=200", "train.epochs=1", "seeds=1",
            "gradient_batches=1"]  # fmt: skip


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("reproduce")
    ctx = RunContext(out=out, device=torch.device("cpu"), data_root=data_root, show_progress=False)
    with spying(tmp_path_factory.mktemp("figures")) as drawn:
        first = reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": TINY_MLP})
    return ctx, out, first, kept_figures(drawn)


@pytest.mark.slow
def test_runs_then_reuses(reproduced, monkeypatch, tmp_path):
    ctx, out, first, _ = reproduced
    assert [(o.name, o.status) for o in first] == [("residual-mlp", "ran")]
    before = (out / "residual-mlp" / "results.json").read_bytes()
    study_report = (out / "residual-mlp" / "report.md").read_text()
    (out / "residual-mlp" / "report.md").write_text("written by an older version\n")
    study, runs = get_study("residual-mlp"), []
    run = study.run
    monkeypatch.setattr(study, "run", lambda config, ctx: runs.append(config) or run(config, ctx))
    second = reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": TINY_MLP})
    assert [(o.name, o.status) for o in second] == [("residual-mlp", "cached")]
    assert runs == [] and (out / "residual-mlp" / "results.json").read_bytes() == before  # nothing ran again
    assert (out / "residual-mlp" / "report.md").read_text() == study_report  # rendered again from the results
    shutil.copytree(out, tmp_path / "copy")  # (the other tests read the first run's files)
    changed = reproduce(dataclasses.replace(ctx, out=tmp_path / "copy"), "quick", only=("residual-mlp",),
                        overrides={"residual-mlp": [*TINY_MLP, "train.lr=0.002"]})  # fmt: skip
    assert changed[0].status == "ran" and [config.train.lr for config in runs] == [0.002]


def test_a_finished_study_is_read_back_with_its_numbers_that_are_not_finite(tmp_path):
    """Its report, rendered again, then sees the NaN its run saw, not the null of the strict JSON file."""
    from dlapps.config import to_dict
    from dlapps.experiments.reproduce import _finished
    from dlapps.report.io import write_json

    config = get_study("residual-mlp").config("quick", [])
    write_json(tmp_path / "results.json", {"config": to_dict(config), "runs": [{"grad_ratio": float("nan")}]})
    assert read_json(tmp_path / "results.json")["runs"] == [{"grad_ratio": None}]
    assert np.isnan(_finished(tmp_path, config)["runs"][0]["grad_ratio"])


@pytest.mark.slow
def test_combined_report_is_self_contained(reproduced):
    _, out, first, kept = reproduced
    text = (out / "report.md").read_text()
    assert "## Lab 1, exercises 1.1–1.2: residual connections in deep MLPs" in text
    assert "(residual-mlp/accuracy_vs_depth.png)" in text and "### Final test accuracy" in text
    glance = text.split("## At a glance")[1].split("\n## ")[0]
    assert "| study | quantity or claim | this run | course write-up | Δ vs write-up |" in glance
    assert "| `residual-mlp` | test accuracy, MLP, depth 2 |" in glance and "| 0.930 |" in glance
    section = text.split("## Lab 1, exercises 1.1–1.2")[1]
    assert section.count("### Against the write-up and the literature") == 1  # the study's own one replaced
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == text.count("![") and 'src="residual-mlp/' not in page
    assert "<table>" in page and "<script" not in page
    drawn = assert_figures(out / "residual-mlp", text.replace("(residual-mlp/", "("), kept, "accuracy_vs_depth.png")
    summary = first[0].results["summary"]
    for variant, label in (("mlp", "MLP"), ("residual-2", "ResidualMLP (2 layers/block)")):
        (row,) = (r for r in summary if r["variant"] == variant)
        assert_line(drawn["accuracy_vs_depth.png"].axes[0], label, [2], [row["mean_test_acc"]])


def test_errors(tmp_path, data_root):
    ctx = RunContext(out=tmp_path / "out", device=torch.device("cpu"), data_root=data_root, show_progress=False)
    with pytest.raises(ConfigError, match="unknown study 'resnet'"):
        reproduce(ctx, "quick", only=("resnet",))
    with pytest.raises(ConfigError, match="unknown profile 'medium'"):
        reproduce(ctx, "medium", only=("residual-mlp",))
    (tmp_path / "r.md").write_text("![x](missing.png)\n")
    with pytest.raises(MissingImageError, match="missing.png"):
        markdown_to_html((tmp_path / "r.md").read_text(), tmp_path, "t")
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(reproduced, tmp_path):
    """Every image decodes, nothing is logged to the console, and a screenshot (kept for review) shows each
    figure where the page places it."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = chromium()
    _, out, _, _ = reproduced
    messages, failures = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("requestfailed", lambda r: failures.append(r.url))
        page.goto((out / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
        count = page.evaluate("document.images.length")
        placed = page.evaluate(
            "[...document.images].map(i => { const r = i.getBoundingClientRect();"
            " return [i.src, r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; })"
        )
        screenshot = Path(os.environ.get("DLAPPS_SCREENSHOT_DIR", tmp_path)) / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert count >= 3 and broken == 0 and not failures
    assert not [m for m in messages if m.startswith("error")], messages
    shot = imread(screenshot)[..., :3]
    for src, left, top, width, height in placed:  # each embedded PNG, scaled to its box, is what the page shows there
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
        box = (round(left), round(top), round(left + width), round(top + height))
        assert width > 300 and box[2] <= shot.shape[1] and box[3] <= shot.shape[0], box
        expected = np.asarray(png.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.BILINEAR)) / 255
        shown = shot[box[1] : box[3], box[0] : box[2]]
        assert np.abs(shown - expected).mean() < 0.03 and shown.std() > 0.05  # the figure, not a blank box


KILLABLE = """
import sys, torch
from pathlib import Path
from dlapps.experiments.base import RunContext
from dlapps.experiments.reproduce import reproduce

out = Path(sys.argv[1])
ctx = RunContext(out=out, device=torch.device("cpu"), models_dir=out / "models", show_progress=False)
reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": sys.argv[2:]})
"""


def _reproduce_in_subprocess(out: Path, data_root: Path, settings: list[str]) -> subprocess.Popen:
    env = {**os.environ, "DLAPPS_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", KILLABLE, str(out), *settings], env=env)


def _reproduce_here(out: Path, data_root: Path, settings: list[str]) -> None:
    """What the subprocess runs, in this process on one thread as there (so the same arithmetic)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ctx = RunContext(out=out, device=torch.device("cpu"), data_root=data_root, show_progress=False)
        reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": settings})
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_killed_reproduce_resumes_to_the_same_numbers(tmp_path, data_root):
    """SIGKILL after the first epoch's checkpoint; the rerun resumes it and matches an uninterrupted run."""
    settings = [*TINY_MLP, "train.epochs=4", "train_subset=3000"]
    _reproduce_here(tmp_path / "whole", data_root, settings)
    killed = _reproduce_in_subprocess(tmp_path / "killed", data_root, settings)
    checkpoints = tmp_path / "killed" / "models"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*.safetensors")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "residual-mlp" / "results.json").exists()
    for path in (tmp_path / "killed").rglob("*.json"):  # whatever was written is whole
        read_json(path)
    _reproduce_here(tmp_path / "killed", data_root, settings)  # resumed
    whole, resumed = (read_json(tmp_path / d / "residual-mlp" / "results.json") for d in ("whole", "killed"))
    key = lambda r: (r["variant"], r["depth"], r["seed"], r["test_acc"], [h["train_loss"] for h in r["history"]])  # noqa: E731
    assert sorted(map(key, resumed["runs"])) == sorted(map(key, whole["runs"]))
