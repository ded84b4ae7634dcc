"""Adaptive and classwise ECE, the risk-coverage curve, AURC and accuracy at a coverage: against torchmetrics or
plain NumPy loops, on known cases, and the audit's record on a slice of real data."""

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from dlapps.data import load_arrays
from dlapps.evaluate import (
    accuracy_and_calibration,
    accuracy_at_coverage,
    adaptive_calibration_error,
    aurc,
    batched_expected_calibration_error,
    classwise_calibration_error,
    confidence_and_correctness,
    expected_calibration_error,
    predict,
    reliability,
    risk_coverage,
)
from helpers import random_predictions


def _predictions(n=500, classes=7):
    logits, labels = random_predictions(n, classes)
    return logits.softmax(1), labels


def _calibrated(n, classes=4, shift=0.0, seed=0):
    """Probabilities whose top label is right with probability equal to its confidence (every other class shares
    the rest evenly and is the label as often); ``shift`` lowers the stated top confidence."""
    generator = torch.Generator().manual_seed(seed)
    confidence = 0.5 + 0.5 * torch.rand(n, generator=generator, dtype=torch.float64)
    predicted = torch.randint(0, classes, (n,), generator=generator)
    other = (predicted + torch.randint(1, classes, (n,), generator=generator)) % classes
    labels = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < confidence, predicted, other)
    stated = confidence - shift
    probabilities = ((1 - stated) / (classes - 1))[:, None].repeat(1, classes)
    probabilities[torch.arange(n), predicted] = stated
    return probabilities, labels


def _gap_sum(confidence, outcome, groups) -> float:
    """sum over groups of |group| / N * |mean outcome - mean confidence|, one group at a time."""
    return sum(len(g) / len(confidence) * abs(outcome[g].mean() - confidence[g].mean()) for g in groups if len(g))


def _equal_width_groups(values, bins):
    index = np.minimum((values * bins).astype(int), bins - 1)  # [k / bins, (k + 1) / bins), 1.0 in the last
    return [np.flatnonzero(index == b) for b in range(bins)]


@pytest.mark.parametrize("bins", [15, 10, 4])
def test_equal_width_ece_agrees_with_torchmetrics_one_row_or_many(bins):
    probs, labels = _predictions()
    reference = MulticlassCalibrationError(num_classes=7, n_bins=bins, norm="l1")(probs, labels).item()
    assert expected_calibration_error(probs, labels, bins) == pytest.approx(reference, abs=1e-6)
    assert expected_calibration_error(probs, labels, bins) == pytest.approx(reliability(probs, labels, bins).ece,
                                                                            abs=1e-12)  # fmt: skip
    confidence, correct = confidence_and_correctness(probs, labels)
    rows = torch.stack([confidence, confidence[:250].repeat(2)]), torch.stack([correct, correct[:250].repeat(2)])
    assert batched_expected_calibration_error(*rows, bins=bins).tolist() == [
        expected_calibration_error(probs, labels, bins),
        expected_calibration_error(probs[:250], labels[:250], bins),
    ]


@pytest.mark.parametrize(("n", "bins"), [(500, 15), (503, 15), (37, 10), (7, 10)])
def test_adaptive_ece_against_a_numpy_loop(n, bins):
    probs, labels = _predictions(n)
    confidence = probs.max(1).values.double().numpy()
    correct = (probs.argmax(1) == labels).double().numpy()
    order = np.argsort(confidence, kind="stable")
    # bin b holds the sorted positions ceil(b n / bins) .. ceil((b + 1) n / bins) - 1
    bounds = [-(-b * n // bins) for b in range(bins + 1)]
    groups = [order[bounds[b] : bounds[b + 1]] for b in range(bins)]
    assert adaptive_calibration_error(probs, labels, bins) == pytest.approx(_gap_sum(confidence, correct, groups),
                                                                            abs=1e-12)  # fmt: skip
    if n % bins == 0:  # equal bins whatever the convention for the remainder
        split = np.array_split(order, bins)
        assert adaptive_calibration_error(probs, labels, bins) == pytest.approx(_gap_sum(confidence, correct, split),
                                                                                abs=1e-12)  # fmt: skip


@pytest.mark.parametrize("bins", [15, 5])
def test_classwise_ece_against_a_numpy_loop(bins):
    probs, labels = _predictions(classes=5)
    p, y = probs.double().numpy(), labels.numpy()
    per_class = [_gap_sum(p[:, k], (y == k).astype(float), _equal_width_groups(p[:, k], bins)) for k in range(5)]
    assert classwise_calibration_error(probs, labels, bins) == pytest.approx(np.mean(per_class), abs=1e-12)


def test_calibrated_data_has_near_zero_ece_and_shifted_data_the_shift():
    probs, labels = _calibrated(100_000)
    for measure in (expected_calibration_error, adaptive_calibration_error, classwise_calibration_error):
        assert measure(probs, labels) < 0.01, measure.__name__
    shifted, labels = _calibrated(100_000, shift=0.1)  # right 10 points more often than it says
    assert expected_calibration_error(shifted, labels) == pytest.approx(0.1, abs=0.01)
    assert adaptive_calibration_error(shifted, labels) == pytest.approx(0.1, abs=0.01)


def _risk_coverage_loop(confidence, correct):
    """(coverage, risk, weight) per distinct confidence from the highest, keeping ties together."""
    points = []
    for threshold in sorted(set(confidence.tolist()), reverse=True):
        kept = confidence >= threshold
        points.append((kept.mean(), 1 - correct[kept].mean(), (confidence == threshold).mean()))
    return points


@pytest.mark.parametrize("ties", [False, True])
def test_risk_coverage_aurc_and_accuracy_at_coverage_against_a_numpy_loop(ties):
    probs, labels = _predictions(n=400)
    confidence, correct = confidence_and_correctness(probs, labels)
    if ties:
        confidence = (confidence * 10).round() / 10
    c, k = confidence.numpy(), correct.numpy()
    points = _risk_coverage_loop(c, k)
    curve = risk_coverage(confidence, correct)
    assert curve.coverage.tolist() == pytest.approx([p[0] for p in points], abs=1e-12)
    assert curve.risk.tolist() == pytest.approx([p[1] for p in points], abs=1e-12)
    assert aurc(confidence, correct) == pytest.approx(sum(w * r for _, r, w in points), abs=1e-12)
    if not ties:  # the usual definition: mean over k of the risk of the k most confident
        errors = 1 - k[np.argsort(-c)]
        assert aurc(confidence, correct) == pytest.approx(np.mean(np.cumsum(errors) / np.arange(1, 401)), abs=1e-12)
    for coverage in (0.9, 0.95, 0.5, 1.0):
        first = next(p for p in points if p[0] >= coverage - 1e-12)
        assert accuracy_at_coverage(confidence, correct, coverage) == pytest.approx(1 - first[1], abs=1e-12)
    shuffled = torch.randperm(400)
    assert aurc(confidence[shuffled], correct[shuffled]) == pytest.approx(aurc(confidence, correct), abs=1e-15)


def test_hand_made_selective_cases():
    confidence = torch.arange(20, 0, -1).double()  # distinct, most confident first
    correct = torch.ones(20)
    correct[[2, 19]] = 0
    assert accuracy_at_coverage(confidence, correct, 0.95) == pytest.approx(18 / 19)  # 0.95 * 20 keeps 19
    assert accuracy_at_coverage(confidence, correct, 0.9) == pytest.approx(17 / 18)
    assert accuracy_at_coverage(confidence, correct, 0.1) == 1.0
    perfect = torch.tensor([1.0] * 15 + [0.0] * 5)  # the 15 right images are the most confident
    expected = sum(max(0, k - 15) / k for k in range(1, 21)) / 20
    assert aurc(confidence, perfect) == pytest.approx(expected)
    assert aurc(torch.ones(20), perfect) == pytest.approx(0.25)  # all tied: one point, coverage 1, risk 5/20
    assert aurc(confidence, torch.tensor([True] * 20)) == 0.0
    with pytest.raises(ValueError, match="coverage"):
        accuracy_at_coverage(confidence, correct, 0.0)


def test_any_score_ranks_and_temperature_may_reorder_confidences():
    logits = torch.tensor([[0.0, -1.0, -100.0], [0.0, -2.0, -2.0]])  # right on the first image, wrong on the second
    correct = torch.tensor([1.0, 0.0])
    cold, hot = logits.softmax(1).max(1).values, (logits / 100).softmax(1).max(1).values
    assert cold[1] > cold[0] and hot[0] > hot[1]  # the runner-up's gap decides at T = 1, all gaps at T = 100
    assert aurc(cold, correct) == pytest.approx(0.75) and aurc(hot, correct) == pytest.approx(0.25)
    binary = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    right = torch.rand(50, generator=torch.Generator().manual_seed(1)) < 0.7
    assert aurc(binary.softmax(1).max(1).values, right) == pytest.approx(
        aurc((binary / 3).softmax(1).max(1).values, right), abs=1e-12)  # fmt: skip
    margin = binary.max(1).values - binary.min(1).values  # a score other than a probability: the same order
    assert aurc(margin, right) == pytest.approx(aurc(binary.softmax(1).max(1).values, right), abs=1e-12)


def test_the_audit_record_keeps_its_keys_and_adds_the_new_ones(resnet20, data_root):
    test = load_arrays("cifar10", "test", data_root, limit=400)
    logits = predict(resnet20, test)
    record = accuracy_and_calibration(logits, test.labels, seed=3, resamples=300)
    calibration = record["calibration"]
    probs = logits.softmax(1)
    assert calibration["ece"] == reliability(probs, test.labels).ece  # unchanged: still the reliability bins'
    assert calibration["adaptive_ece"] == adaptive_calibration_error(probs, test.labels)
    assert calibration["classwise_ece"] == classwise_calibration_error(probs, test.labels)
    confidence, correct = confidence_and_correctness(probs, test.labels)
    assert calibration["aurc"] == aurc(confidence, correct)
    assert calibration["accuracy_at_90_coverage"] >= record["top1"]  # the most confident are the more accurate
    for name in ("adaptive_ece", "classwise_ece", "aurc", "accuracy_at_90_coverage", "accuracy_at_95_coverage"):
        assert {f"{name}_before", f"{name}_after"} <= calibration.keys()
    assert abs(calibration["aurc_after"] - calibration["aurc_before"]) < 0.01  # a reordering, not a new ranking
    top1, ece = record["intervals"]["top1"], record["intervals"]["ece"]
    assert top1["estimate"] == record["top1"] and top1["low"] < record["top1"] < top1["high"]
    assert ece["estimate"] == pytest.approx(calibration["ece"], abs=1e-12) and ece["low"] < ece["high"]
    assert top1["level"] == 0.95 and top1["resamples"] == 300
    assert record["intervals"] == accuracy_and_calibration(logits, test.labels, seed=3, resamples=300)["intervals"]
