"""Evaluating a classifier's predictions: accuracy (top-k, per class, confusion) and calibration (ECE, NLL,
Brier score, reliability, temperature scaling). Functions take logits or probabilities and labels as tensors
and return numbers or tensors on the inputs' device."""

from dlapps.evaluate.accuracy import confusion_matrix, per_class_accuracy, predict, top_k_accuracy
from dlapps.evaluate.calibration import (
    Reliability,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from dlapps.evaluate.summary import accuracy_and_calibration, bins_record

__all__ = [
    "Reliability",
    "accuracy_and_calibration",
    "bins_record",
    "brier_score",
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "per_class_accuracy",
    "predict",
    "reliability",
    "top_k_accuracy",
]
