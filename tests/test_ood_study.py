"""The ``ood`` study end to end through the CLI on a tiny configuration, and its input errors."""

import json

import numpy as np
import pytest

from test_cli import assert_one_line_error, dlapps

TINY = [
    "--profile",
    "quick",
    "--no-progress",
    "--set",
    "ood_sets=cifar100,gaussian",
    "--set",
    "id_subset=200",
    "--set",
    "ood_subset=100",
    "--set",
    "fit_subset=200",
    "--set",
    "detector.knn_k=10",
    "--set",
    "train_subset=1000",
    "--set",
    "small_cnn_train.epochs=1",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("study") / "ood"
    result = dlapps("run", "ood", *TINY, "--out", str(out), data_root=data_root)
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "results.json").read_text())


def test_run_writes_every_metric_figure_and_the_report(finished):
    out, results = finished
    assert set(results["models"]) == {"small_cnn", "resnet20"}
    assert len(results["metrics"]) == 2 * 8 * 2  # models x detectors x OOD sets
    assert all(0 <= r[m] <= 1 for r in results["metrics"] for m in ("auroc", "aupr_in", "aupr_out", "fpr95"))
    assert results["data"]["ood"]["cifar100"] == {
        "source": results["data"]["ood"]["cifar100"]["source"],
        "size": 100,
        "distance": "near",
    }
    assert results["models"]["resnet20"]["accuracy"] > 0.85 and results["models"]["small_cnn"]["accuracy"] > 0.15
    msp = next(
        r for r in results["metrics"] if (r["model"], r["detector"], r["ood_set"]) == ("resnet20", "msp", "cifar100")
    )
    assert msp["auroc"] > 0.75
    assert {c["goal"].split(" ")[0] for c in results["checks"]} == {"MSP", "small"}
    beats = {r["detector"]: r["beats_msp_far"] for r in results["summary"] if r["model"] == "resnet20"}
    assert beats["msp"] is None and beats["mahalanobis"] is True  # Gaussian noise is easy for feature detectors
    report = (out / "report.md").read_text()
    for name in ("overview_msp.png", "histograms_small_cnn.png", "curves_resnet20.png"):
        assert (out / name).stat().st_size > 20_000 and f"({name})" in report
    assert "| detector | cifar100 | gaussian | beats MSP (near / far) |" in report
    assert "### ResNet-20 (ID accuracy" in report and "OpenOOD near" in report
    assert (out / "results.csv").read_text().count("\n") == 33 and "id_accuracy" in (out / "results.csv").read_text()
    assert "| small CNN |" in (out / "table.md").read_text()
    assert not list(out.glob(".staging*"))


def _archive(path, images: np.ndarray) -> str:
    np.savez(path, images=images, labels=np.zeros(len(images), dtype=np.int64), classes=np.array(["mine"]))
    return str(path)


def test_input_errors_are_one_line(tmp_path, data_root):
    def run(*sets: str):
        return dlapps("run", "ood", *TINY, *sets, "--out", str(tmp_path / "out"), data_root=data_root)

    grey = _archive(tmp_path / "grey.npz", np.zeros((4, 28, 28, 1), dtype=np.uint8))
    assert_one_line_error(
        run("--set", f"ood_sets={grey}"), "grey.npz: images are (1, 28, 28)", "takes (3, 32, 32)", "resize_ood=true"
    )
    empty = _archive(tmp_path / "empty.npz", np.zeros((0, 32, 32, 3), dtype=np.uint8))
    assert_one_line_error(run("--set", f"ood_sets={empty}"), "empty.npz", "is empty")
    assert_one_line_error(run("--set", "fit_subset=5", "--set", "detector.knn_k=50"), "smaller than knn_k=50")
    assert not (tmp_path / "out" / "results.json").exists()
