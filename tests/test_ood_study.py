"""The ``ood`` study end to end through the CLI on a tiny configuration, its input errors and its models."""

import json

import numpy as np
import pytest
import torch

from dlapps.errors import ConfigError
from dlapps.experiments import RunContext, get_study
from dlapps.experiments import ood as study
from helpers import assert_one_line_error, dlapps

TINY = [
    "--profile",
    "quick",
    "--no-progress",
    "--set",
    "ood_sets=cifar100,gaussian",
    "--set",
    "detectors=msp,energy,mahalanobis,knn",  # every detector has its own tests; these cover both kinds
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
    assert len(results["metrics"]) == 2 * 4 * 2  # models x detectors x OOD sets
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
    assert "### ResNet-20 (ID accuracy" in report and "| ResNet-20 MSP AUROC, near-OOD mean |" in report
    resnet = results["models"]["resnet20"]["accuracy"]
    assert f"| ResNet-20 CIFAR-10 test accuracy | {resnet:.3f} | 0.810 | {resnet - 0.81:+.3f} |" in report
    assert (out / "results.csv").read_text().count("\n") == 17 and "id_accuracy" in (out / "results.csv").read_text()
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
    assert_one_line_error(run("--set", "fit_subset=5", "--set", "detector.knn_k=50"), "smaller than knn_k=50")
    assert not (tmp_path / "out" / "results.json").exists()


def test_models_trained_here_follow_the_config(monkeypatch, tmp_path):
    recipes = []

    def fake_obtain(recipe, ctx, **_):
        recipes.append(recipe)
        return recipe.build().eval(), {"history": []}

    monkeypatch.setattr(study, "obtain_classifier", fake_obtain)
    config = get_study("ood").config("quick", ["resnet20=train", "resnet20_train.epochs=7", "augment=true"])
    ctx = RunContext(out=tmp_path, device=torch.device("cpu"))
    for name in ("small_cnn", "resnet20"):
        model, info = study._obtain_model(name, config, ctx, None, None, None)
        assert info["source"].startswith("trained here: ") and info["source"].endswith(".safetensors")
    small, resnet = recipes
    assert (small.model, small.train.epochs, small.train_subset, small.augment) == ("small_cnn", 3, 10_000, True)
    assert (resnet.model, resnet.train.epochs, resnet.train.optimizer, resnet.augment) == ("resnet20", 7, "sgd", True)
    with pytest.raises(ConfigError, match="resnet20_weights is a pretrained weights file"):
        get_study("ood").config("quick", ["resnet20=train", "resnet20_weights=w.th"])
