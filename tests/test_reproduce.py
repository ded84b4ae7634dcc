"""``reproduce``: runs studies once, reuses them after, and writes a self-contained HTML report."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlapps.errors import ConfigError
from dlapps.experiments.base import RunContext
from dlapps.experiments.reproduce import reproduce
from dlapps.report.html import MissingImageError, markdown_to_html
from dlapps.report.io import read_json
from helpers import chromium

pytestmark = pytest.mark.slow  # whole studies and commands, end to end

TINY_MLP = ["depths=2", "gradient_depth=2", "train_subset=500", "test_subset=200", "train.epochs=1", "seeds=1",
            "gradient_batches=1"]  # fmt: skip


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("reproduce")
    ctx = RunContext(out=out, device=torch.device("cpu"), data_root=data_root, show_progress=False)
    first = reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": TINY_MLP})
    return ctx, out, first


def test_runs_then_reuses(reproduced):
    ctx, out, first = reproduced
    assert [(o.name, o.status) for o in first] == [("residual-mlp", "ran")]
    before = (out / "residual-mlp" / "results.json").read_bytes()
    study_report = (out / "residual-mlp" / "report.md").read_text()
    (out / "residual-mlp" / "report.md").write_text("written by an older version\n")
    started = time.perf_counter()
    second = reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": TINY_MLP})
    assert [(o.name, o.status) for o in second] == [("residual-mlp", "cached")]
    assert time.perf_counter() - started < 5 and (out / "residual-mlp" / "results.json").read_bytes() == before
    assert (out / "residual-mlp" / "report.md").read_text() == study_report  # rendered again from the results
    changed = reproduce(ctx, "quick", only=("residual-mlp",), overrides={"residual-mlp": [*TINY_MLP, "train.lr=0.002"]})
    assert changed[0].status == "ran"


def test_combined_report_is_self_contained(reproduced):
    _, out, _ = reproduced
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


def test_errors(tmp_path, reproduced):
    ctx, _, _ = reproduced
    with pytest.raises(ConfigError, match="unknown study 'resnet'"):
        reproduce(ctx, "quick", only=("resnet",))
    with pytest.raises(ConfigError, match="unknown profile 'medium'"):
        reproduce(ctx, "medium", only=("residual-mlp",))
    (tmp_path / "r.md").write_text("![x](missing.png)\n")
    with pytest.raises(MissingImageError, match="missing.png"):
        markdown_to_html((tmp_path / "r.md").read_text(), tmp_path, "t")


def test_html_report_renders_in_headless_chromium(reproduced, tmp_path):
    """Every image decodes, nothing is logged to the console, and a screenshot is taken (kept for review)."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = chromium()
    _, out, _ = reproduced
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
        screenshot = Path(os.environ.get("DLAPPS_SCREENSHOT_DIR", tmp_path)) / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert count >= 3 and broken == 0 and not failures
    assert not [m for m in messages if m.startswith("error")], messages
    assert screenshot.stat().st_size > 50_000


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


def test_killed_reproduce_resumes_to_the_same_numbers(tmp_path, data_root):
    """SIGKILL after the first epoch's checkpoint; the rerun resumes it and matches an uninterrupted run."""
    settings = [*TINY_MLP, "train.epochs=4", "train_subset=3000"]
    _reproduce_in_subprocess(tmp_path / "whole", data_root, settings).wait(timeout=600)
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
    assert _reproduce_in_subprocess(tmp_path / "killed", data_root, settings).wait(timeout=600) == 0
    whole, resumed = (read_json(tmp_path / d / "residual-mlp" / "results.json") for d in ("whole", "killed"))
    key = lambda r: (r["variant"], r["depth"], r["seed"], r["test_acc"], [h["train_loss"] for h in r["history"]])  # noqa: E731
    assert sorted(map(key, resumed["runs"])) == sorted(map(key, whole["runs"]))
