"""Calibration: does a confidence of 0.8 mean right 80% of the time?

- Expected calibration error (Naeini et al. 2015; Guo et al. 2017): the confidences (largest softmax
  probability) are put in ``bins`` equal-width bins of [0, 1] (left-closed; 1.0 in the last bin), and
  ``ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|``.
- Adaptive ECE (Nixon et al. 2019, "Measuring Calibration in Deep Learning"): the same sum over ``bins``
  equal-mass bins. The confidences are sorted ascending (ties in input order) and the i-th of N goes to bin
  ``floor(i * bins / N)``, so bin sizes differ by at most one and tied confidences may straddle two bins. It is
  the top-label version, not Nixon's class-averaged ACE.
- Classwise ECE (Kull et al. 2019, "Beyond temperature scaling"): the mean over classes k of the equal-width ECE
  of the probability of class k against the one-vs-rest label ``label == k``, over all N samples.
- Negative log-likelihood: mean cross-entropy of the true class. Brier score: mean over samples of the squared
  distance between the probability vector and the one-hot label (summed over classes, so it lies in [0, 2]).
- Temperature scaling (Guo et al. 2017): the single ``T > 0`` minimising the NLL of ``softmax(logits / T)``,
  fitted on held-out data; it changes confidences, never predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Reliability:
    """Per bin of confidence: its edges, how many samples fell in it, their mean confidence and accuracy."""

    edges: torch.Tensor  # (bins + 1,)
    counts: torch.Tensor  # (bins,)
    confidence: torch.Tensor  # (bins,), NaN for an empty bin
    accuracy: torch.Tensor  # (bins,), NaN for an empty bin

    @property
    def ece(self) -> float:
        weights = self.counts / self.counts.sum()
        gaps = (self.accuracy - self.confidence).abs().nan_to_num(0.0)
        return float((weights * gaps).sum())


def confidence_and_correctness(probabilities: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) largest probability (float64) and (N,) whether its class is the label (float64, 0 or 1)."""
    confidence, prediction = probabilities.double().max(dim=1)
    return confidence, (prediction == labels).double()


def _equal_width_edges(bins: int, device: torch.device) -> torch.Tensor:
    return torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=device)


def _equal_width_bin(values: torch.Tensor, bins: int) -> torch.Tensor:
    """The index of each value's equal-width bin of [0, 1] (left-closed; 1.0 in the last bin)."""
    return (torch.bucketize(values, _equal_width_edges(bins, values.device), right=True) - 1).clamp(0, bins - 1)


def _binned_calibration_error(
    confidence: torch.Tensor, outcome: torch.Tensor, bin_index: torch.Tensor, bins: int
) -> torch.Tensor:
    """The calibration error of each row of (G, N) inputs, ``sum_b |sum_{i in b} outcome_i - confidence_i| / N``
    (the ECE sum, as ``|B_b| / N * |mean gap|`` is the bin's summed gap over N); one bincount over all rows,
    their bins offset by ``row * bins``, so G rows (resamples, classes) cost no Python loop."""
    groups, n = confidence.shape
    offset = torch.arange(groups, device=confidence.device)[:, None] * bins
    flat = (bin_index + offset).reshape(-1)
    outcome_sums = torch.bincount(flat, weights=outcome.reshape(-1).double(), minlength=groups * bins)
    confidence_sums = torch.bincount(flat, weights=confidence.reshape(-1).double(), minlength=groups * bins)
    return (outcome_sums - confidence_sums).abs().view(groups, bins).sum(dim=1) / n


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Reliability:
    """Confidence against accuracy in ``bins`` equal-width bins (``probabilities``: (N, classes), rows sum to 1)."""
    return confidence_reliability(*confidence_and_correctness(probabilities, labels), bins)


def confidence_reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> Reliability:
    """:func:`reliability` from each prediction's confidence and whether it was right (N,), for callers that keep
    those rather than every probability (e.g. 75 corrupted copies of a test set)."""
    confidence, correct = confidence.double(), correct.double()
    index = _equal_width_bin(confidence, bins)
    counts = torch.bincount(index, minlength=bins).double()
    sums = torch.zeros(2, bins, dtype=torch.float64, device=confidence.device)
    sums[0].index_add_(0, index, confidence)
    sums[1].index_add_(0, index, correct)
    return Reliability(_equal_width_edges(bins, confidence.device), counts, sums[0] / counts, sums[1] / counts)


def batched_expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> torch.Tensor:
    """(B,) equal-width ECE of each row of (B, N) confidences and 0/1 correctness (bootstrap resamples, say)."""
    return _binned_calibration_error(confidence, correct, _equal_width_bin(confidence, bins), bins)


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    confidence, correct = confidence_and_correctness(probabilities, labels)
    return batched_expected_calibration_error(confidence[None], correct[None], bins).item()


def adaptive_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE over ``bins`` equal-mass bins: unlike equal-width bins, none is nearly empty when confidences crowd
    near 1, so each bin's gap is measured on N / bins samples."""
    confidence, correct = confidence_and_correctness(probabilities, labels)
    order = confidence.argsort(stable=True)
    index = torch.arange(len(order), device=order.device) * bins // len(order)
    return _binned_calibration_error(confidence[order][None], correct[order][None], index[None], bins).item()


def classwise_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Mean over classes of each class probability's equal-width ECE against ``label == class``: it also counts
    the calibration of the probabilities that are not the largest."""
    probabilities = probabilities.double()
    classes = probabilities.shape[1]
    onehot = F.one_hot(labels, classes).double()
    per_class = probabilities.T.contiguous()  # (classes, N): one row per class
    index = _equal_width_bin(per_class, bins)
    return _binned_calibration_error(per_class, onehot.T, index, bins).mean().item()


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return F.cross_entropy(logits.double() / temperature, labels).item()


def brier_score(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    onehot = F.one_hot(labels, probabilities.shape[1]).double()
    return (probabilities.double() - onehot).square().sum(dim=1).mean().item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the NLL of ``logits / T`` (optimised over log T with L-BFGS, from T = 1)."""
    logits, labels = logits.detach().double().cpu(), labels.cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return log_t.detach().exp().item()
