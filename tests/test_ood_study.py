"""The ``ood`` study end to end through the CLI on a tiny configuration, its input errors and its models."""

import numpy as np
import pytest
import torch

from dlapps.data import get_dataset
from dlapps.errors import ConfigError
from dlapps.experiments import RunContext, base, get_study
from dlapps.report.io import read_json
from helpers import assert_one_line_error, dlapps

pytestmark = pytest.mark.slow  # whole studies and commands, end to end

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
    "baseline.train_subset=1000",
    "--set",
    "baseline.train.epochs=1",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("study") / "ood"
    result = dlapps("run", "ood", *TINY, "--out", str(out), data_root=data_root)
    assert result.returncode == 0, result.stderr
    return out, read_json(out / "results.json")


def test_run_writes_every_metric_figure_and_the_report(finished):
    out, results = finished
    assert list(results["models"]) == ["baseline", "model"]
    assert results["models"]["model"]["label"] == "ResNet-20 (published CIFAR-10 weights)"
    assert results["models"]["baseline"]["label"] == "small CNN trained here on CIFAR-10"
    assert len(results["metrics"]) == 2 * 4 * 2  # models x detectors x OOD sets
    assert all(0 <= r[m] <= 1 for r in results["metrics"] for m in ("auroc", "aupr_in", "aupr_out", "fpr95"))
    assert results["data"]["ood"]["cifar100"] == {
        "source": results["data"]["ood"]["cifar100"]["source"],
        "size": 100,
        "distance": "near",
    }
    assert results["models"]["model"]["accuracy"] > 0.85 and results["models"]["baseline"]["accuracy"] > 0.15
    msp = next(
        r for r in results["metrics"] if (r["model"], r["detector"], r["ood_set"]) == ("model", "msp", "cifar100")
    )
    assert msp["auroc"] > 0.75
    beats = {r["detector"]: r["beats_msp_far"] for r in results["summary"] if r["model"] == "model"}
    assert beats["msp"] is None and beats["mahalanobis"] is True  # Gaussian noise is easy for feature detectors
    report = (out / "report.md").read_text()
    for name in ("overview_msp.png", "histograms_baseline.png", "curves_model.png"):
        assert (out / name).stat().st_size > 20_000 and f"({name})" in report
    assert "| detector | cifar100 | gaussian | beats MSP (near / far) |" in report
    assert "### ResNet-20 (published CIFAR-10 weights) (ID accuracy" in report
    assert "| ResNet-20 MSP AUROC, near-OOD mean |" in report and "issue" not in report
    resnet = results["models"]["model"]["accuracy"]
    row = f"| ResNet-20 (published CIFAR-10 weights): CIFAR-10 test accuracy | {resnet:.3f} | 0.810 | {resnet - 0.81:+.3f} |"
    assert row in report
    assert (out / "results.csv").read_text().count("\n") == 17 and "id_accuracy" in (out / "results.csv").read_text()
    assert "| small CNN trained here on CIFAR-10 |" in (out / "table.md").read_text()
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

    def fake_obtain(recipe, *_, **__):
        recipes.append(recipe)
        raise StopIteration

    monkeypatch.setattr(base, "obtain_classifier", fake_obtain)
    config = get_study("ood").config("quick", ["model=resnet20", "model.train.epochs=7", "baseline.augment=true"])
    ctx = RunContext(out=tmp_path, device=torch.device("cpu"))
    dataset = get_dataset("cifar10")
    for spec in config.specs().values():
        with pytest.raises(StopIteration):
            ctx.classifier(spec, None, dataset=dataset, test_subset=config.id_subset)
    small, resnet = recipes
    assert (small.model, small.train.epochs, small.train_subset, small.augment) == ("small_cnn", 3, 10_000, True)
    assert (resnet.model, resnet.train.epochs, resnet.train.optimizer, resnet.augment) == ("resnet20", 7, "sgd", True)
    assert small.test_subset == resnet.test_subset == 2000
    with pytest.raises(ConfigError, match="model resnet20_cifar10.th is a checkpoint file|does not exist"):
        get_study("ood").config("quick", ["model=resnet20_cifar10.th", "model.weights=w.th"])


def test_a_companion_model_is_analysed_beside_the_two(tmp_path, data_root):
    out = tmp_path / "ood"
    companion = ["with_companion=true", "companion.train_subset=500", "companion.train.epochs=1",
                 "detectors=msp,energy", "ood_sets=cifar100"]  # fmt: skip
    result = dlapps("run", "ood", *TINY, *[a for s in companion for a in ("--set", s)], "--out", str(out),
                    data_root=data_root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    results, report = read_json(out / "results.json"), (out / "report.md").read_text()
    assert list(results["models"]) == ["baseline", "companion", "model"]
    assert results["models"]["companion"]["label"] == "ResNet-20 trained here on CIFAR-10"
    assert len(results["metrics"]) == 3 * 2 * 1  # models x detectors x OOD sets
    assert (out / "histograms_companion.png").stat().st_size > 20_000 and "(curves_companion.png)" in report
    assert "| ResNet-20 trained here on CIFAR-10: CIFAR-10 test accuracy |" in report
    assert "published CIFAR-10 weights): CIFAR-10 test accuracy" not in report  # the write-up's ResNet is its own
    assert report.count("the ResNet detects CIFAR-100 images better than the small CNN (MSP)") == 2
