"""Calibration: does a confidence of 0.8 mean right 80% of the time?

- Expected calibration error (Naeini et al. 2015; Guo et al. 2017): the confidences (largest softmax
  probability) are put in ``bins`` equal-width bins of [0, 1] (left-closed; 1.0 in the last bin), and
  ``ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|``.
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


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Reliability:
    """Confidence against accuracy in ``bins`` equal-width bins (``probabilities``: (N, classes), rows sum to 1)."""
    confidence, prediction = probabilities.double().max(dim=1)
    return confidence_reliability(confidence, prediction == labels, bins)


def confidence_reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> Reliability:
    """:func:`reliability` from each prediction's confidence and whether it was right (N,), for callers that keep
    those rather than every probability (e.g. 75 corrupted copies of a test set)."""
    confidence, correct = confidence.double().cpu(), correct.double().cpu()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    sums = torch.zeros(2, bins, dtype=torch.float64)
    sums[0].index_add_(0, index, confidence)
    sums[1].index_add_(0, index, correct)
    return Reliability(edges, counts, sums[0] / counts, sums[1] / counts)


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    return reliability(probabilities, labels, bins).ece


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
