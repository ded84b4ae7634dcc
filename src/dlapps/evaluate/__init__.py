"""Evaluating a classifier's predictions: accuracy (top-k, per class, confusion), calibration (equal-width,
adaptive and classwise ECE, NLL, Brier score, reliability, temperature scaling), selective prediction
(risk-coverage curve, AURC, accuracy at a coverage), accuracy under the common corruptions, and seeded percentile
bootstrap intervals, batched over resamples (accuracy, ECE, AUROC, paired differences). Functions take logits,
probabilities, scores or correctness and labels as tensors and return numbers or tensors on the inputs' device."""

from dlapps.evaluate.accuracy import confusion_matrix, per_class_accuracy, predict, top_k_accuracy
from dlapps.evaluate.bootstrap import (
    BootstrapInterval,
    batched_accuracy,
    batched_auroc,
    bootstrap_ci,
    paired_difference_ci,
    within_noise,
)
from dlapps.evaluate.calibration import (
    Reliability,
    adaptive_calibration_error,
    batched_expected_calibration_error,
    brier_score,
    classwise_calibration_error,
    confidence_and_correctness,
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
from dlapps.evaluate.selective import RiskCoverage, accuracy_at_coverage, aurc, risk_coverage
from dlapps.evaluate.summary import accuracy_and_calibration, bins_record

__all__ = [
    "BootstrapInterval",
    "CorruptionEvaluation",
    "Reliability",
    "RiskCoverage",
    "accuracy_and_calibration",
    "accuracy_at_coverage",
    "adaptive_calibration_error",
    "aurc",
    "batched_accuracy",
    "batched_auroc",
    "batched_expected_calibration_error",
    "bins_record",
    "bootstrap_ci",
    "brier_score",
    "classwise_calibration_error",
    "confidence_and_correctness",
    "confidence_reliability",
    "confusion_matrix",
    "evaluate_corruptions",
    "expected_calibration_error",
    "fit_temperature",
    "mean_corruption_accuracy",
    "negative_log_likelihood",
    "paired_difference_ci",
    "per_class_accuracy",
    "predict",
    "relative_corruption_error",
    "reliability",
    "risk_coverage",
    "top_k_accuracy",
    "within_noise",
]
