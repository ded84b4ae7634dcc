"""Evaluating a classifier's predictions: accuracy (top-k, per class, confusion) and calibration (ECE, NLL,
Brier score, reliability, temperature scaling); and accuracy under the common corruptions. Functions take logits
or probabilities and labels as tensors and return numbers or tensors on the inputs' device."""

from dlapps.evaluate.accuracy import confusion_matrix, per_class_accuracy, predict, top_k_accuracy
from dlapps.evaluate.calibration import (
    Reliability,
    brier_score,
    confidence_reliability,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from dlapps.evaluate.corruption import (
    CorruptionEvaluation,
    evaluate_corruptions,
    mean_corruption_accuracy,
    relative_corruption_error,
)
from dlapps.evaluate.summary import accuracy_and_calibration, bins_record

__all__ = [
    "CorruptionEvaluation",
    "Reliability",
    "accuracy_and_calibration",
    "bins_record",
    "brier_score",
    "confidence_reliability",
    "confusion_matrix",
    "evaluate_corruptions",
    "expected_calibration_error",
    "fit_temperature",
    "mean_corruption_accuracy",
    "negative_log_likelihood",
    "per_class_accuracy",
    "predict",
    "relative_corruption_error",
    "reliability",
    "top_k_accuracy",
]
