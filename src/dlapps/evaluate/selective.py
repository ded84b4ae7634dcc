"""Selective prediction: how accurate is a classifier on the images it is most confident about?

A classifier may abstain; it keeps an image when its confidence (any score, higher = more confident: the
largest softmax probability, a temperature-scaled one, an OOD score) is at least a threshold ``t``.

- **Risk-coverage curve** (Geifman & El-Yaniv 2017): one point per distinct confidence, from the highest down.
  At threshold ``t`` the coverage is the fraction of images kept and the risk the error rate among them. Tied
  confidences are kept or dropped together, so the curve does not depend on the order of the input.
- **AURC** (Geifman et al. 2019, "Bias-reduced uncertainty estimation for deep neural classifiers"): the area
  under the curve as a right-endpoint sum over coverage, ``AURC = sum_t (coverage_t - coverage_{t-1}) * risk_t``.
  Without ties this is the usual ``(1 / N) sum_{k=1..N} risk(k most confident)``; a group of ``m`` tied
  confidences adds ``m / N`` times the risk once the whole group is kept. Lower is better; a perfect ranking
  of ``A`` correct images among ``N`` has ``AURC = (1 / N) sum_k max(0, k - A) / k``, not 0.
- **Accuracy at coverage c**: the accuracy on the images kept by the highest threshold that keeps at least
  ``c`` of them (a threshold one can actually set: with ties it may keep a little more than ``c``).

Temperature scaling never changes predictions, but it may reorder the largest softmax probability between
images (at a low temperature the gap to the runner-up decides it, at a high one the gaps to all classes), so
the curve and AURC before and after it can differ a little; pass the calibrated probabilities' confidences to
measure after it. In binary classification the order is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RiskCoverage:
    """Per distinct confidence, from the highest down: the threshold, the images kept and the errors among them."""

    thresholds: torch.Tensor  # (T,), decreasing
    kept: torch.Tensor  # (T,), increasing, the last is N
    errors: torch.Tensor  # (T,)

    @property
    def coverage(self) -> torch.Tensor:
        return self.kept.double() / self.kept[-1]

    @property
    def risk(self) -> torch.Tensor:
        return self.errors.double() / self.kept

    @property
    def area(self) -> float:
        """AURC: the right-endpoint sum over coverage (see the module docstring)."""
        steps = torch.diff(self.coverage, prepend=self.coverage.new_zeros(1))
        return float((steps * self.risk).sum())

    def accuracy_at(self, coverage: float) -> float:
        """Accuracy at the highest threshold keeping at least ``coverage`` (in (0, 1]) of the images."""
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        needed = math.ceil(round(coverage * int(self.kept[-1]), 9))  # round: 0.95 * 20 is 19, not 19.000000000000004
        point = int(torch.searchsorted(self.kept, torch.tensor([needed], device=self.kept.device)))
        return 1.0 - float(self.risk[point])


def risk_coverage(confidence: torch.Tensor, correct: torch.Tensor) -> RiskCoverage:
    """The risk-coverage curve of (N,) confidences (higher = keep first) and (N,) correctness (bool or 0/1)."""
    if confidence.numel() == 0 or confidence.shape != correct.shape:
        raise ValueError(f"need matching non-empty (N,) confidence and correctness, got {tuple(confidence.shape)} "
                         f"and {tuple(correct.shape)}")  # fmt: skip
    order = confidence.argsort(descending=True)
    thresholds, counts = torch.unique_consecutive(confidence[order], return_counts=True)
    kept = counts.cumsum(0)
    errors = (correct[order] == 0).long().cumsum(0)[kept - 1]
    return RiskCoverage(thresholds, kept, errors)


def aurc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    return risk_coverage(confidence, correct).area


def accuracy_at_coverage(confidence: torch.Tensor, correct: torch.Tensor, coverage: float) -> float:
    return risk_coverage(confidence, correct).accuracy_at(coverage)
