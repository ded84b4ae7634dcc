"""Everything the logits of a test split say about a classifier's accuracy and calibration, as one JSON-ready
record (what ``dlapps audit`` reports and caches)."""

from __future__ import annotations

from typing import Any

import torch

from dlapps.evaluate.accuracy import confusion_matrix, per_class_accuracy, top_k_accuracy
from dlapps.evaluate.calibration import (
    Reliability,
    brier_score,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)


def bins_record(bins: Reliability) -> dict[str, list]:
    """A reliability diagram's bins as JSON-ready lists (empty bins: NaN)."""
    return {"confidence": bins.confidence.tolist(), "accuracy": bins.accuracy.tolist(), "count": bins.counts.tolist()}


def accuracy_and_calibration(
    logits: torch.Tensor, labels: torch.Tensor, *, classes: int | None = None, bins: int = 15, seed: int = 0
) -> dict[str, Any]:
    """Top-1 (and top-5 with more than 10 classes), accuracy per class over ``classes`` classes (default: one per
    logit), the confusion matrix, and calibration:
    ECE over ``bins`` equal-width bins, NLL, Brier score and mean confidence on every image; and temperature
    scaling fitted on a seeded half of the images, with ECE, NLL and reliability bins before and after it on
    the other half."""
    classes = classes or logits.shape[1]
    probs = logits.softmax(1)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    temperature = fit_temperature(logits[fit], labels[fit])
    before = reliability(probs[held], labels[held], bins)
    after = reliability((logits[held] / temperature).softmax(1), labels[held], bins)
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
        },
    }  # fmt: skip
