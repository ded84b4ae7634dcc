"""``dlapps audit``: its measurements against independent ones, and the command end to end on three models."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from scipy.stats import spearmanr
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import top_k_accuracy_score
from torchmetrics.classification import MulticlassCalibrationError

from dlapps.attacks import attack_arrays, half_fooled
from dlapps.data import load_arrays
from dlapps.evaluate import (
    brier_score,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    per_class_accuracy,
    predict,
    reliability,
    top_k_accuracy,
)
from dlapps.explain import head_randomisation_check, randomised_head, rank_correlation
from dlapps.report.io import read_json
from figures_check import assert_cam_grid_is_gradcam, assert_figures, assert_line, bars, kept_figures, panel
from helpers import assert_one_line_error, dlapps_main, random_predictions, trained_small_cnn


@pytest.mark.parametrize("bins", [15, 10])
def test_ece_agrees_with_torchmetrics(bins):
    logits, labels = random_predictions()
    probs = logits.softmax(1)
    reference = MulticlassCalibrationError(num_classes=7, n_bins=bins, norm="l1")(probs, labels).item()
    assert expected_calibration_error(probs, labels, bins) == pytest.approx(reference, abs=1e-6)


def test_calibration_metrics_on_hand_made_cases():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 1, 1])
    bins = reliability(probs, labels, bins=2)  # confidences 0.9, 0.6, 0.7, 0.8 all fall in the bin [0.5, 1]
    assert bins.counts.tolist() == [0, 4] and bins.accuracy[1] == pytest.approx(0.75)
    assert bins.ece == pytest.approx(abs(0.75 - 0.75))  # mean confidence (0.9+0.6+0.7+0.8)/4 = 0.75
    assert brier_score(probs, labels) == pytest.approx((0.02 + 0.72 + 0.18 + 0.08) / 4)
    logits = torch.log(probs)
    assert negative_log_likelihood(logits, labels) == pytest.approx(F.cross_entropy(logits, labels).item())


def test_accuracy_metrics_agree_with_scikit_learn():
    logits, labels = random_predictions(classes=12)
    for k in (1, 5):
        assert top_k_accuracy(logits, labels, k) == pytest.approx(
            top_k_accuracy_score(labels, logits, k=k, labels=range(12))
        )
    matrix = confusion_matrix(logits, labels, 12)
    assert np.array_equal(matrix.numpy(), sk_confusion(labels, logits.argmax(1), labels=range(12)))
    per_class = per_class_accuracy(logits, labels, 12)
    assert torch.allclose(per_class, matrix.diag().double() / matrix.sum(1).double())


def test_temperature_scaling_lowers_held_out_nll_of_a_real_model(resnet20, data_root):
    test = load_arrays("cifar10", "test", data_root, limit=1000)
    logits = predict(resnet20, test)
    fit, held = slice(0, 500), slice(500, 1000)
    temperature = fit_temperature(logits[fit], test.labels[fit])
    assert temperature > 1.2  # the published ResNet-20 is overconfident
    before = negative_log_likelihood(logits[held], test.labels[held])
    assert negative_log_likelihood(logits[held], test.labels[held], temperature) < before - 0.02
    grid = torch.linspace(0.5, 4, 351)
    best = min(grid, key=lambda t: negative_log_likelihood(logits[fit], test.labels[fit], float(t)))
    assert temperature == pytest.approx(float(best), abs=0.02)  # the minimiser, as a grid search finds it


def test_rank_correlation_and_the_head_randomisation_check(resnet20, data_root):
    a, b = torch.rand(3, 50), torch.rand(3, 50)
    a[0, :10] = 0  # ties
    expected = [spearmanr(x, y).statistic for x, y in zip(a.numpy(), b.numpy(), strict=True)]
    assert rank_correlation(a, b).tolist() == pytest.approx(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-zero map has no ranks: NaN, without a warning for every image
        assert rank_correlation(torch.zeros(2, 50), b[:2]).isnan().all()
    x = load_arrays("cifar10", "test", data_root, limit=6).images.float() / 255
    targets = resnet20(x).argmax(1)
    same = head_randomisation_check("gradcam", resnet20, x, "layer3", targets, seed=0)
    assert same.shape == (6,) and same.mean() < 0.6  # Grad-CAM's maps follow the head's weights
    assert torch.equal(randomised_head(resnet20, 1).linear.weight, randomised_head(resnet20, 1).linear.weight)  # seeded
    assert not torch.equal(randomised_head(resnet20, 1).linear.weight, randomised_head(resnet20, 2).linear.weight)
    assert not torch.equal(randomised_head(resnet20, 1).linear.weight, resnet20.linear.weight)


@pytest.mark.slow  # attacks on a real model
@pytest.mark.parametrize("eps", [1, 2])
def test_robust_accuracy_is_at_most_torchattacks_pgd(resnet20, data_root, eps):
    """PGD with restarts never reports more robustness than torchattacks' PGD with the same budget."""
    test = load_arrays("cifar10", "test", data_root, limit=64)
    x = test.images.float() / 255
    torch.manual_seed(0)
    reference = torchattacks.PGD(resnet20, eps=eps / 255, alpha=eps / 255 / 4, steps=10, random_start=True)
    theirs = (resnet20(reference(x, test.labels)).argmax(1) == test.labels).double().mean().item()
    ours = attack_arrays(resnet20, test, "pgd", eps=eps / 255, alpha=eps / 255 / 4, steps=10, restarts=2,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    robust = ours.pred_after == ours.labels
    clean = resnet20(x).argmax(1) == test.labels
    assert not (robust & ~clean).any()
    assert robust.double().mean().item() <= theirs


def test_half_fooled_interpolates_or_bounds():
    rows = lambda *f: [{"eps_255": e, "fooled": v} for e, v in zip((1, 2, 4, 8), f, strict=False)]  # noqa: E731
    assert half_fooled(rows(0.2, 0.4, 0.6, 1.0)) == {"eps": pytest.approx(2 * 2**0.5), "relation": "≈"}
    assert half_fooled(rows(0.7, 0.9, 1, 1)) == {"eps": 1, "relation": "≤"}
    assert half_fooled(rows(0.1, 0.2, 0.3, 0.4)) == {"eps": 8, "relation": ">"}


TINY = ["test_subset=200", "faithfulness_images=8", "deletion_images=4", "deletion_steps=4", "sanity_images=4",
        "grid_images=3", "id_subset=100", "ood_subset=50", "fit_subset=200", "attack_images=20",
        "epsilons=0.5,2,8", "ensemble_steps=5", "square_queries=20", "detectors=msp,energy,mahalanobis",
        "corruption_images=30"]  # fmt: skip


def _audit(out, data_root, *args: str, settings=TINY, **spies):
    sets = [arg for pair in settings for arg in ("--set", pair)]
    result = dlapps_main("audit", *args, "--out", str(out), "--no-progress", *sets, data_root=data_root, **spies)
    assert result.returncode == 0, result.stderr
    return read_json(out / "results.json"), (out / "report.md").read_text()


def _assert_audit_figures(drawn, results, model) -> None:
    """Each figure draws the numbers of results.json; the CAM grid, Grad-CAM's maps of the images it shows."""
    matrix = np.array(results["accuracy"]["confusion"], dtype=float)
    confusion, per_class = drawn["confusion.png"].axes[:2]  # (then the colour bar)
    np.testing.assert_allclose(confusion.get_images()[0].get_array(), matrix / matrix.sum(1, keepdims=True))
    assert [bar.get_width() for bar in per_class.patches] == pytest.approx(results["accuracy"]["per_class"])
    calibration = results["accuracy"]["calibration"]
    for label, bins in (("as trained", "bins_before"), (f"temperature {calibration['temperature']:.2f}", "bins_after")):
        curve = calibration[bins]
        kept = [i for i, a in enumerate(curve["accuracy"]) if a is not None]  # empty bins are not drawn
        assert_line(drawn["reliability.png"].axes[0], label, [curve["confidence"][i] for i in kept],
                    [curve["accuracy"][i] for i in kept])  # fmt: skip
    names = {"msp": "MSP", "energy": "Energy", "mahalanobis": "Mahalanobis"}
    drawn_bars = bars(drawn["ood.png"].axes[0])
    assert set(drawn_bars) == set(names.values())
    for detector, name in names.items():  # one bar per OOD set, in the order of the sets
        heights = {r["ood_set"]: r["auroc"] for r in results["ood"]["metrics"] if r["detector"] == detector}
        assert drawn_bars[name] == pytest.approx([heights[s] for s in results["ood"]["sets"]])
    rows, config = results["robustness"]["rows"], results["config"]
    eps, steps = [r["eps_255"] for r in rows], config["attack_steps"]
    accuracy = panel(drawn["robustness.png"], "accuracy")
    for label, key in (("clean", "clean_accuracy"), (f"PGD-{steps}", "robust_accuracy"),
                       ("robust (PGD and the ensemble)", "robust_accuracy_all")):  # fmt: skip
        assert_line(accuracy, label, eps, [r[key] for r in rows])
    assert_line(
        panel(drawn["robustness.png"], "correctly classified images fooled"), "", eps, [r["fooled"] for r in rows]
    )
    effort = panel(drawn["effort.png"], "correctly classified images fooled within k steps")
    for r in rows:
        assert_line(effort, f"ε = {r['eps_255']:g}/255", range(steps + 1), r["cumulative_success"])
    assert_cam_grid_is_gradcam(drawn["cam_grid.png"], model, "layer3")


def _assert_corruptions(shift, report, figure):
    """The 15 corruptions at 5 severities, their mean with its interval, detectors per severity; the heat map
    draws the table."""
    assert len(shift["corruptions"]) == 15 and shift["severities"] == [1, 2, 3, 4, 5] and shift["images"] == 30
    grid = np.array([shift["accuracy"][n] for n in shift["corruptions"]])
    assert shift["mean_accuracy"] == pytest.approx(grid.mean()) and np.mean(shift["per_image"]["accuracy"]) == (
        pytest.approx(grid.mean()))  # fmt: skip
    assert shift["interval"]["low"] <= shift["mean_accuracy"] <= shift["interval"]["high"]
    assert shift["relative_error"] == pytest.approx(shift["clean_accuracy"] - shift["mean_accuracy"])
    assert grid[:, -1].mean() < shift["clean_accuracy"]  # severity 5 hurts
    assert {f["detector"] for f in shift["detectors"]} == {"msp", "energy", "mahalanobis"}
    assert len(shift["detectors"]) == 15 and len(shift["ece_by_severity"]) == 5
    (axis,) = [a for a in figure.axes if a.get_images()]
    drawn = axis.get_images()[0].get_array()
    np.testing.assert_allclose(drawn, np.column_stack([np.full(15, shift["clean_accuracy"]), grid]))
    assert [t.get_text() for t in axis.get_yticklabels()] == shift["corruptions"]
    assert "| **mean** |" in report and "gaussian noise" in report


def _assert_intervals_and_selective_prediction(results, report, figure):
    """Every headline number with its 95% interval around it; selective prediction on the held-out half."""
    accuracy, calibration = results["accuracy"], results["accuracy"]["calibration"]
    for name, value in (("top1", accuracy["top1"]), ("ece", calibration["ece"])):
        interval = accuracy["intervals"][name]
        assert interval["low"] <= value <= interval["high"] and interval["resamples"] == 1000
        assert interval["estimate"] == pytest.approx(value)
    correct = np.array(accuracy["per_image"]["correct"])
    assert correct.mean() == pytest.approx(accuracy["top1"]) and len(correct) == accuracy["images"]
    for record in results["ood"]["metrics"]:
        low, high = record["auroc_ci"]
        assert low <= record["auroc"] <= high
        assert (record["auroc_minus_msp_ci"] is None) == (record["detector"] == "msp")
    robust = results["robustness"]["linf"]
    assert len(robust["robust_images"]) == round(robust["robust_accuracy_all"] * results["robustness"]["images"])
    assert robust["interval"]["low"] <= robust["robust_accuracy_all"] <= robust["interval"]["high"]
    assert calibration["aurc_after"] > 0 and calibration["accuracy_at_90_coverage"] >= accuracy["top1"]
    top1 = f"{100 * accuracy['top1']:.1f}% ({100 * accuracy['intervals']['top1']['low']:.1f}–"
    assert f"| top-1 accuracy | {top1}" in report and "### Selective prediction" in report
    curves = accuracy["risk_coverage"]
    (axis,) = figure.axes
    for label, key in (("as trained", "before"), (f"temperature {calibration['temperature']:.2f}", "after")):
        assert_line(axis, label, curves[key]["coverage"], curves[key]["risk"])


@pytest.mark.slow
def test_audit_of_the_published_resnet20(tmp_path, data_root, resnet20):
    out = tmp_path / "resnet20"
    results, report = _audit(out, data_root, "--model", "resnet20_cifar10", "--data", "cifar10",
                             figures=tmp_path / "figures")  # fmt: skip
    assert results["accuracy"]["images"] == 200 and results["accuracy"]["top1"] > 0.85
    assert results["accuracy"]["top5"] is None and len(results["accuracy"]["per_class"]) == 10
    calibration = results["accuracy"]["calibration"]
    assert calibration["temperature"] > 1 and calibration["nll_after"] < calibration["nll_before"]
    assert set(results["ood"]["sets"]) == {"cifar100", "mnist", "fakedata", "gaussian", "uniform"}
    assert results["ood"]["sets"]["cifar100"]["distance"] == "near" and len(results["ood"]["metrics"]) == 15
    assert {n for n, i in results["ood"]["sets"].items() if i["distance"] == "far"} == {"mnist", "fakedata", "gaussian",
                                                                                       "uniform"}  # fmt: skip
    assert [c["set"] for c in results["ood"]["left_out"]] == ["cifar10"]  # never the ID data against itself
    rows = results["robustness"]["rows"]
    assert [r["eps_255"] for r in rows] == [0.5, 2, 8] and rows[-1]["robust_accuracy_all"] == 0.0
    assert all(r["robust_accuracy_all"] <= r["robust_accuracy"] for r in rows)
    robust = results["robustness"]
    assert robust["linf"]["eps_255"] == 8 and robust["l2"]["eps"] == 0.5
    assert [s["attack"] for s in robust["linf"]["ensemble"]["stages"]] == ["apgd-ce", "apgd-t", "square"]
    assert [s["attack"] for s in robust["l2"]["ensemble"]["stages"]] == ["apgd-ce", "apgd-t"]  # Square is L∞ only
    assert not any(check["flagged"] for check in robust["trust"]) and len(robust["trust"]) == 5
    assert [s for s, *_ in results["summary"]] == ["accuracy", "calibration", "explanations", "explanations",
                                                  "OOD detection", "corruptions", "robustness", "robustness"]  # fmt: skip
    for heading in (
        "## Summary",
        "## Accuracy",
        "## Calibration",
        "## Explanations",
        "## OOD detection",
        "## Common corruptions",
        "## Robustness",
    ):
        assert heading in report
    drawn = assert_figures(out, report, kept_figures(tmp_path / "figures"), "confusion.png", "reliability.png",
                           "risk_coverage.png", "cam_grid.png", "ood.png", "corruptions.png", "robustness.png",
                           "effort.png")  # fmt: skip
    _assert_audit_figures(drawn, results, resnet20)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 8 and "<script" not in page
    _assert_intervals_and_selective_prediction(results, report, drawn["risk_coverage.png"])
    _assert_corruptions(results["corruptions"], report, drawn["corruptions.png"])
    again, _ = _audit(out, data_root, "--model", "resnet20_cifar10", "--data", "cifar10")
    assert again["cached_runs"] == 5 and again["summary"] == results["summary"]  # every section reused
    (section,) = (out / "runs").glob("robustness-*.json")
    section.unlink()  # as if the run had been stopped at the end of the robustness section
    resumed, _ = _audit(out, data_root, "--model", "resnet20_cifar10", "--data", "cifar10")
    attacks = len(list((out / "runs").glob("audit-attack-*.json")))
    assert attacks > 10 and resumed["cached_runs"] == 4 + attacks  # every attack's record reused, none run again
    assert resumed["robustness"] == results["robustness"]


@pytest.mark.slow
def test_audit_of_an_imagenet_model_on_imagenette(tmp_path, data_root):
    """The 1,000-way MobileNetV2 on the shared Imagenette images, audited as a classifier of their 10 classes."""
    results, report = _audit(tmp_path / "mobilenet", data_root, "--model", "mobilenet_v2_imagenet", "--data", "imagenette",
                             # each 224-pixel image costs: a few images per OOD set
                             settings=[*TINY, "test_subset=40", "attack_images=2", "epsilons=1", "attack_steps=2",
                                       "ensemble_steps=2", "square_queries=5", "ood_subset=5", "id_subset=5", "fit_subset=10",
                                       "detectors=msp,energy", "faithfulness_images=4", "deletion_images=2",
                                       "deletion_steps=2", "sanity_images=2", "grid_images=1"])  # fmt: skip
    assert results["model"]["restricted_to"] == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    assert results["accuracy"]["top1"] > 0.8 and len(results["accuracy"]["per_class"]) == 10
    assert "its outputs for 10 classes" in results["model"]["title"] and "(outputs 0, 217, 482" in report
    assert results["explanations"]["layer"] == "features.18"
    sets = results["ood"]["sets"]  # every registered set, made to 224 px, and none of them near ImageNet's images
    assert set(sets) == {"cifar100", "cifar10", "mnist", "fakedata", "gaussian", "uniform"}
    assert {i["distance"] for i in sets.values()} == {"far"} and results["ood"]["left_out"] == []
    assert sets["cifar100"]["source"].endswith("resized to (3, 224, 224)") and "| cifar100 | far |" in report


@pytest.mark.slow
def test_audit_of_a_model_trained_by_dlapps_train_on_a_grey_dataset(tmp_path, data_root):
    checkpoint = trained_small_cnn(tmp_path / "models", "mnist", data_root, "train_subset=4000", "test_subset=500",
                                   "train.epochs=1", "augment=false")  # fmt: skip
    results, report = _audit(tmp_path / "mnist", data_root, "--model", str(checkpoint), "--data", "mnist")
    assert results["accuracy"]["top1"] > 0.8 and results["model"]["kind"] == "checkpoint"
    sets = results["ood"]["sets"]
    assert sets["cifar100"]["source"].endswith("resized to (1, 28, 28)")  # a default, made to fit
    assert "mnist" not in sets and [c["set"] for c in results["ood"]["left_out"]] == ["mnist"]
    assert {i["distance"] for i in sets.values()} == {"far"}
    assert report.startswith(f"# Audit of small CNN trained on MNIST ({checkpoint.name}) on MNIST")


def test_audit_input_errors_are_one_line(tmp_path, data_root):
    def audit(*args):
        return dlapps_main("audit", *args, "--out", str(tmp_path / "out"), data_root=data_root)

    assert_one_line_error(audit("--model", "resnet20_cifar10", "--data", "cifar100"),
                          "has 10 outputs but CIFAR-100 has 100 classes")  # fmt: skip
    assert_one_line_error(audit("--model", "resnet20_cifar10", "--data", "cifar10", "--ood", "mnist_ish.npz"),
                          "dataset path mnist_ish.npz does not exist")  # fmt: skip
    grey = tmp_path / "grey.npz"
    np.savez(grey, images=np.zeros((4, 28, 28, 1), np.uint8), labels=np.zeros(4, np.int64), classes=np.array(["a"]))
    assert_one_line_error(audit("--model", "resnet20_cifar10", "--data", "cifar10", "--ood", str(grey)),
                          "grey.npz: images are (1, 28, 28)", "resize_ood=true")  # fmt: skip
    empty = tmp_path / "empty_test.npz"
    np.savez(empty, images=np.zeros((0, 32, 32, 3), np.uint8), labels=np.zeros(0, np.int64), classes=np.array(["a"]))
    assert_one_line_error(audit("--model", "resnet20_cifar10", "--data", str(empty)), "the split is empty")
    assert not (tmp_path / "out" / "results.json").exists()
