"""Everything the logits of a test split say about a classifier's accuracy and calibration, as one JSON-ready
record (what ``dlapps audit`` reports and caches)."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from dlapps.evaluate.accuracy import confusion_matrix, per_class_accuracy, top_k_accuracy
from dlapps.evaluate.bootstrap import batched_accuracy, bootstrap_ci
from dlapps.evaluate.calibration import (
    Reliability,
    adaptive_calibration_error,
    batched_expected_calibration_error,
    brier_score,
    classwise_calibration_error,
    confidence_and_correctness,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from dlapps.evaluate.selective import risk_coverage

COVERAGES = (0.9, 0.95)


def bins_record(bins: Reliability) -> dict[str, list]:
    """A reliability diagram's bins as JSON-ready lists (empty bins: NaN)."""
    return {"confidence": bins.confidence.tolist(), "accuracy": bins.accuracy.tolist(), "count": bins.counts.tolist()}


def _uncertainty_record(probabilities: torch.Tensor, labels: torch.Tensor, bins: int, suffix: str = "") -> dict:
    """Adaptive and classwise ECE, AURC and accuracy at each of :data:`COVERAGES`, keyed with ``suffix``."""
    curve = risk_coverage(*confidence_and_correctness(probabilities, labels))
    record = {
        "adaptive_ece": adaptive_calibration_error(probabilities, labels, bins),
        "classwise_ece": classwise_calibration_error(probabilities, labels, bins),
        "aurc": curve.area,
        **{f"accuracy_at_{round(100 * c)}_coverage": curve.accuracy_at(c) for c in COVERAGES},
    }
    return {f"{key}{suffix}": value for key, value in record.items()}


def curve_record(probabilities: torch.Tensor, labels: torch.Tensor, points: int = 101) -> dict[str, list[float]]:
    """The risk-coverage curve at most ``points`` of its points (evenly spread over its length), for a figure."""
    curve = risk_coverage(*confidence_and_correctness(probabilities, labels))
    keep = torch.linspace(0, len(curve.kept) - 1, min(points, len(curve.kept))).round().long().unique()
    return {"coverage": curve.coverage[keep].tolist(), "risk": curve.risk[keep].tolist()}


def accuracy_and_calibration(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    classes: int | None = None,
    bins: int = 15,
    seed: int = 0,
    resamples: int = 1000,
) -> dict[str, Any]:
    """Top-1 (and top-5 with more than 10 classes), accuracy per class over ``classes`` classes (default: one per
    logit), the confusion matrix, and calibration:
    ECE over ``bins`` equal-width bins, NLL, Brier score, mean confidence, adaptive and classwise ECE, AURC and
    accuracy at 90% and 95% coverage on every image; and temperature scaling fitted on a seeded half of the
    images, with all but the Brier score and mean confidence before and after it on the other half (and
    reliability bins, risk-coverage curves). ``intervals``: 95% percentile bootstrap intervals of top-1 and ECE
    over ``resamples`` resamples of every image, seeded with ``seed`` like the split. ``per_image``: each image's
    correctness and confidence, for paired comparisons of models on the same images."""
    classes = classes or logits.shape[1]
    probs = logits.softmax(1)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    temperature = fit_temperature(logits[fit], labels[fit])
    before = reliability(probs[held], labels[held], bins)
    calibrated = (logits[held] / temperature).softmax(1)
    after = reliability(calibrated, labels[held], bins)
    confidence, correct = confidence_and_correctness(probs, labels)
    generator = torch.Generator().manual_seed(seed)
    intervals = {
        "top1": bootstrap_ci(batched_accuracy, correct, resamples=resamples, generator=generator),
        "ece": bootstrap_ci(partial(batched_expected_calibration_error, bins=bins), (confidence, correct),
                            resamples=resamples, generator=generator),
    }  # fmt: skip
    return {
        "images": len(labels),
        "top1": top_k_accuracy(logits, labels, 1),
        "top5": top_k_accuracy(logits, labels, 5) if classes > 10 else None,
        "per_class": per_class_accuracy(logits, labels, classes).tolist(),
        "confusion": confusion_matrix(logits, labels, classes).tolist(),
        "calibration": {
            "ece": reliability(probs, labels, bins).ece, "nll": negative_log_likelihood(logits, labels),
            "brier": brier_score(probs, labels), "mean_confidence": probs.max(1).values.mean().item(),
            "temperature": temperature, "fitted_on": len(fit), "measured_on": len(held),
            "ece_before": before.ece, "ece_after": after.ece,
            "nll_before": negative_log_likelihood(logits[held], labels[held]),
            "nll_after": negative_log_likelihood(logits[held], labels[held], temperature),
            "bins_before": bins_record(before), "bins_after": bins_record(after),
            **_uncertainty_record(probs, labels, bins),
            **_uncertainty_record(probs[held], labels[held], bins, "_before"),
            **_uncertainty_record(calibrated, labels[held], bins, "_after"),
        },
        "intervals": {name: interval.to_record() for name, interval in intervals.items()},
        "risk_coverage": {"before": curve_record(probs[held], labels[held]),
                          "after": curve_record(calibrated, labels[held])},
        "per_image": {"correct": correct.int().tolist(), "confidence": confidence.tolist()},
    }  # fmt: skip
