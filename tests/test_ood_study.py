"""The ``ood`` study end to end through the command on a tiny configuration, its input errors and its models."""

import numpy as np
import pytest
import torch

from dlapps.data import get_dataset
from dlapps.errors import ConfigError
from dlapps.experiments import RunContext, get_study
from dlapps.report.io import read_json
from dlapps.train import ClassifierRecipe, source
from figures_check import area_under, assert_figures, kept_figures, lines
from helpers import assert_one_line_error, dlapps_main, epochs_trained

TINY = [
    "--profile",
    "quick",
    "--no-progress",
    "--set",
    "ood_sets=cifar100,gaussian",
    "--set",
    "detectors=msp,energy,mahalanobis,knn",  # every detector has its own tests; these cover both kinds
    "--set",
    "id_subset=100",
    "--set",
    "ood_subset=60",
    "--set",
    "fit_subset=100",
    "--set",
    'detector={"knn": {"k": 10}}',
    "--set",
    "baseline.train_subset=1000",
    "--set",
    "baseline.train.epochs=1",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("study")
    out, drawn = root / "ood", root / "figures"
    result = dlapps_main("run", "ood", *TINY, "--out", str(out), data_root=data_root, figures=drawn)
    assert result.returncode == 0, result.stderr
    return out, read_json(out / "results.json"), kept_figures(drawn)


NAMES = {"msp": "MSP", "energy": "Energy", "mahalanobis": "Mahalanobis", "knn": "KNN"}


def _metric(results, model: str, detector: str, ood_set: str) -> dict:
    (row,) = (r for r in results["metrics"] if (r["model"], r["detector"], r["ood_set"]) == (model, detector, ood_set))
    return row


def assert_curves(roc, pr, expected: dict[str, dict]) -> None:
    """The ROC panel draws, for each ``label -> metrics row``, a curve whose area is the row's AUROC (named in
    its legend), and the precision-recall panel one whose average precision is the row's AUPR-In."""
    drawn_roc, drawn_pr = lines(roc), lines(pr)
    assert len(drawn_roc) == len(drawn_pr) == len(expected)
    for label, row in expected.items():
        fpr, tpr = drawn_roc[f"{label} ({row['auroc']:.3f})"]
        assert area_under(fpr, tpr) == pytest.approx(row["auroc"], abs=1e-9)
        recall, precision = drawn_pr[label]  # recall falls from 1 to 0: average precision is a step sum
        assert -np.sum(np.diff(recall) * precision[:-1]) == pytest.approx(row["aupr_in"], abs=1e-9)


def assert_ood_figures(out, report: str, kept, results: dict, role: str, detectors, sets) -> None:
    """``role``'s histograms name each detector's AUROC against each set, and its curves draw them."""
    drawn = assert_figures(out, report, kept, f"histograms_{role}.png", f"curves_{role}.png")
    histograms, curves = drawn[f"histograms_{role}.png"].axes, drawn[f"curves_{role}.png"].axes
    for col, ood_set in enumerate(sets):
        for row, detector in enumerate(detectors):  # rows: detectors, columns: OOD sets
            auroc = _metric(results, role, detector, ood_set)["auroc"]
            assert [t.get_text() for t in histograms[row * len(sets) + col].texts] == [f"AUROC {auroc:.3f}"]
        expected = {NAMES[d]: _metric(results, role, d, ood_set) for d in detectors}
        assert_curves(curves[col], curves[len(sets) + col], expected)  # ROC above, precision-recall below


@pytest.mark.slow
def test_run_writes_every_metric_figure_and_the_report(finished):
    out, results, kept = finished
    assert list(results["models"]) == ["baseline", "model"]
    assert results["models"]["model"]["label"] == "ResNet-20 (published CIFAR-10 weights)"
    assert results["models"]["baseline"]["label"] == "small CNN trained here on CIFAR-10"
    assert len(results["metrics"]) == 2 * 4 * 2  # models x detectors x OOD sets
    assert all(0 <= r[m] <= 1 for r in results["metrics"] for m in ("auroc", "aupr_in", "aupr_out", "fpr95"))
    cifar100 = results["data"]["ood"]["cifar100"]
    assert (cifar100["size"], cifar100["distance"]) == (60, "near") and set(cifar100) == {
        "source",
        "size",
        "distance",
        "why",
    }
    assert "cifar100_test.npz" in cifar100["source"] and "without bus, pickup_truck" in cifar100["source"]
    assert results["models"]["model"]["accuracy"] > 0.85 and results["models"]["baseline"]["accuracy"] > 0.15
    assert _metric(results, "model", "msp", "cifar100")["auroc"] > 0.75
    beats = {r["detector"]: r["beats_msp_far"] for r in results["summary"] if r["model"] == "model"}
    assert beats["msp"] is None and beats["mahalanobis"] is True  # Gaussian noise is easy for feature detectors
    report = (out / "report.md").read_text()
    for role in ("baseline", "model"):
        assert_ood_figures(out, report, kept, results, role, list(NAMES), ["cifar100", "gaussian"])
    overview = assert_figures(out, report, kept, "overview_msp.png")["overview_msp.png"].axes
    for col, role in enumerate(["baseline", "model"]):  # rows: the histogram against CIFAR-100, ROC, precision-recall
        expected = {s: _metric(results, role, "msp", s) for s in ("cifar100", "gaussian")}
        assert [t.get_text() for t in overview[col].texts] == [f"AUROC {expected['cifar100']['auroc']:.3f}"]
        assert_curves(overview[2 + col], overview[4 + col], expected)
    assert "| detector | cifar100 | gaussian | beats MSP (near / far) |" in report
    assert "### ResNet-20 (published CIFAR-10 weights) (ID accuracy" in report
    near = next(r for r in results["summary"] if (r["model"], r["detector"]) == ("model", "msp"))["near_auroc"]
    assert near == _metric(results, "model", "msp", "cifar100")["auroc"]  # CIFAR-100 is the only near set
    assert f"| ResNet-20 MSP AUROC, near-OOD mean | {near:.3f} | — | — |" in report
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
        return dlapps_main("run", "ood", *TINY, *sets, "--out", str(tmp_path / "out"), data_root=data_root)

    grey = _archive(tmp_path / "grey.npz", np.zeros((4, 28, 28, 1), dtype=np.uint8))
    assert_one_line_error(
        run("--set", f"ood_sets={grey}"), "grey.npz: images are (1, 28, 28)", "takes (3, 32, 32)", "resize_ood=true"
    )
    assert_one_line_error(
        run("--set", "fit_subset=5", "--set", 'detector={"knn": {"k": 50}}'), "smaller than KNN's k=50"
    )
    assert not (tmp_path / "out" / "results.json").exists()


def test_models_trained_here_follow_the_config(monkeypatch, tmp_path):
    recipes = []

    def fake_obtain(recipe, *_, **__):
        recipes.append(recipe)
        raise StopIteration

    monkeypatch.setattr(source, "obtain_classifier", fake_obtain)
    monkeypatch.setattr(ClassifierRecipe, "load_data", lambda *_, **__: (None, None))  # the recipe is all it checks
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


@pytest.mark.slow
def test_a_companion_model_is_analysed_beside_the_two(finished, tmp_path, data_root):
    out, models = tmp_path / "ood", finished[0].parent / "models"  # the small CNN trained there is reused
    companion = ["with_companion=true", "companion.train_subset=256", "companion.train.epochs=1",
                 "detectors=msp,energy", "ood_sets=cifar100"]  # fmt: skip
    result = dlapps_main("run", "ood", *TINY, *[a for s in companion for a in ("--set", s)], "--out", str(out),
                         "--models-dir", str(models), data_root=data_root, figures=tmp_path / "figures",
                         epochs=tmp_path / "epochs")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(epochs_trained(tmp_path / "epochs")) == 1  # the companion's one epoch: the small CNN is reused
    results, report = read_json(out / "results.json"), (out / "report.md").read_text()
    assert list(results["models"]) == ["baseline", "companion", "model"]
    assert results["models"]["companion"]["label"] == "ResNet-20 trained here on CIFAR-10"
    assert len(results["metrics"]) == 3 * 2 * 1  # models x detectors x OOD sets
    assert_ood_figures(out, report, kept_figures(tmp_path / "figures"), results, "companion", ["msp", "energy"],
                       ["cifar100"])  # fmt: skip
    assert "| ResNet-20 trained here on CIFAR-10: CIFAR-10 test accuracy |" in report
    assert "published CIFAR-10 weights): CIFAR-10 test accuracy" not in report  # the write-up's ResNet is its own
    assert report.count("the ResNet detects CIFAR-100 images better than the small CNN (MSP)") == 2
