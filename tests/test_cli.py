"""The command line end to end, as a user runs it: a subprocess, real data, a tiny configuration; a rerun and the
input errors through the command's entry point in this process."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dlapps.errors import ConfigError
from dlapps.report.io import read_json
from figures_check import assert_figures, assert_line, kept_figures, panel
from helpers import assert_one_line_error, dlapps, dlapps_main, epochs_trained, spy_env

TINY = [
    "--profile",
    "quick",
    "--seeds",
    "1",
    "--no-progress",
    "--set",
    "depths=2,4",
    "--set",
    "gradient_depth=4",
    "--set",
    "train_subset=1000",
    "--set",
    "test_subset=500",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.lr=0.005",
    "--set",
    "gradient_batches=2",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("study")
    out, drawn = root / "residual-mlp", root / "figures"
    result = dlapps("run", "residual-mlp", *TINY, "--out", str(out), data_root=data_root, **spy_env(figures=drawn))
    assert result.returncode == 0, result.stderr
    return out, result, kept_figures(drawn)


LABELS = {"mlp": "MLP", "residual-1": "ResidualMLP (1 layer/block)", "residual-2": "ResidualMLP (2 layers/block)"}


@pytest.mark.slow
def test_run_writes_results_figures_and_report(finished_run):
    out, result, kept = finished_run
    assert "done" in result.stdout
    results = read_json(out / "results.json")
    assert len(results["runs"]) == 2 * 3  # depths x {MLP, residual 1, residual 2} x 1 seed
    assert {(s["depth"], s["variant"]) for s in results["summary"]} == {
        (d, v) for d in (2, 4) for v in ("mlp", "residual-1", "residual-2")
    }
    assert all(0.0 <= r["test_acc"] <= 1.0 and len(r["history"]) == 2 for r in results["runs"])
    assert max(r["test_acc"] for r in results["runs"]) > 0.7  # a depth-2 net learns in two epochs
    assert results["config"]["train_subset"] == 1000 and results["data"]["test_size"] == 500
    for variant in ("mlp", "residual-1", "residual-2"):
        assert len(results["gradients"]["init"][variant]["weight"]) == 4 + 2
        assert len(results["gradients"]["trained"][variant]["bias"]) == 4 + 2
    report = (out / "report.md").read_text()
    drawn = assert_figures(out, report, kept, "accuracy_vs_depth.png", "curves.png", "gradients_init.png",
                           "gradients_trained.png")  # fmt: skip
    summary = {(s["variant"], s["depth"]): s["mean_test_acc"] for s in results["summary"]}
    for variant, label in LABELS.items():  # every line is drawn through this run's numbers
        assert_line(drawn["accuracy_vs_depth.png"].axes[0], label, [2, 4], [summary[variant, d] for d in (2, 4)])
        for run in (r for r in results["runs"] if r["variant"] == variant):
            curve = [h["test_acc"] for h in run["history"]]
            assert_line(panel(drawn["curves.png"], f"depth {run['depth']}"), label, [1, 2], curve)
        for stage in ("init", "trained"):
            norms = results["gradients"][stage][variant]
            for kind, title in (("weight", "weights"), ("bias", "biases")):
                assert_line(panel(drawn[f"gradients_{stage}.png"], title), label, range(1, 7), norms[kind])
    assert "| depth | MLP |" in (out / "table.md").read_text() and "| depth | MLP |" in report
    mlp_2 = next(r for r in results["summary"] if (r["variant"], r["depth"]) == ("mlp", 2))["mean_test_acc"]
    assert f"| test accuracy, MLP, depth 2 | {mlp_2:.3f} | 0.930 | {mlp_2 - 0.93:+.3f} |" in report
    assert (out / "results.csv").read_text().count("\n") == 7
    assert not list(out.glob(".staging*")) and not list(out.rglob("*.tmp*"))


@pytest.mark.slow
def test_rerun_reuses_finished_runs(finished_run, data_root):
    out, _, _ = finished_run
    epochs = out.parent / "epochs-again"
    result = dlapps_main("run", "residual-mlp", *TINY, "--out", str(out), data_root=data_root, epochs=epochs)
    assert result.returncode == 0, result.stderr
    results = read_json(out / "results.json")
    assert results["cached_runs"] == 6 and epochs_trained(epochs) == []  # nothing trained again


@pytest.mark.slow
def test_failed_run_keeps_earlier_results(finished_run, data_root, tmp_path):
    out, _, _ = finished_run
    before = (out / "results.json").read_bytes()
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "mnist_train.npz").symlink_to((data_root / "mnist_train.npz").resolve())
    (broken / "mnist_test.npz").write_bytes((data_root / "mnist_test.npz").read_bytes()[:4096])
    result = dlapps_main("run", "residual-mlp", *TINY, "--set", "train.epochs=3", "--out", str(out), data_root=broken)
    assert_one_line_error(result, "mnist_test.npz is unreadable")
    assert (out / "results.json").read_bytes() == before
    assert not list(out.glob(".staging*"))


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--set", "dpeths=2"], ["unknown config key 'dpeths'", "known keys:"]),
        (["--set", "depths=0"], ["depths: must be positive, got 0"]),
        (["--set", "train.lr=fast"], ["train.lr='fast' is not a valid float"]),
        (["--set", "dataset=nosuchdata"], ["unknown dataset 'nosuchdata'"]),
        (["--profile", "huge"], ["unknown profile 'huge'", "quick, full"]),
        (["--device", "tpu"], ["unknown device 'tpu'"]),
        (["--precision", "fp16"], ["unknown precision 'fp16'; use auto, fp32, bf16"]),
    ],
)
def test_bad_input_is_one_line(args, fragments, tmp_path, data_root):
    result = dlapps_main("run", "residual-mlp", *args, "--out", str(tmp_path), data_root=data_root)
    assert_one_line_error(result, *fragments)


def test_missing_data_root_and_unknown_study(tmp_path):
    result = dlapps_main(
        "run", "residual-mlp", *TINY, "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "nope")
    )
    assert_one_line_error(result, "data root", "nope", "does not exist")
    assert_one_line_error(dlapps_main("run", "resnet-mlp"), "unknown study 'resnet-mlp'", "residual-mlp")


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(ConfigError, match="depths: must be positive"):  # raised, not one line: Python's traceback
        dlapps_main("--debug", "run", "residual-mlp", "--set", "depths=0", "--out", str(tmp_path))


def test_help_datasets_studies_config(data_root):
    for command in ([], ["run"], ["datasets"], ["studies"], ["config"]):
        result = dlapps_main(*command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout
    for command in ("run", "audit", "reproduce"):  # what to install for Ray, its brackets not read as markup
        assert "pip install 'dlapps[ray]'" in dlapps_main(command, "--help", COLUMNS="300").stdout
    listing = dlapps_main("datasets", "--data-root", str(data_root))
    assert listing.returncode == 0 and "mnist_train.npz" in listing.stdout
    assert "residual-mlp" in dlapps_main("studies").stdout
    resolved = json.loads(dlapps_main("config", "residual-mlp", "--profile", "full", "--set", "train.lr=0.01").stdout)
    assert resolved["train.lr"] == 0.01 and resolved["depths"] == [2, 8, 32, 64]


@pytest.mark.slow
def test_ctrl_c_says_what_is_kept_and_exits_130(tmp_path, data_root):
    out = tmp_path / "interrupted"
    env = {**os.environ, "DLAPPS_DATA": str(data_root)}
    args = [sys.executable, "-m", "dlapps", "run", "residual-mlp", *TINY, "--set", "train.epochs=50", "--out", str(out)]
    # A shell starts background jobs with Ctrl-C ignored; a user's terminal does not.
    run = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    models = tmp_path / "models"  # beside the output folder
    while not list(models.glob("*.safetensors")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert (
        stderr.strip().splitlines()[-1] == "dlapps: interrupted; finished runs are kept and a rerun resumes from them"
    )
    assert list(models.glob("*.safetensors")) and not (out / "results.json").exists()
