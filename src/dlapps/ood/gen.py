"""GEN (generalised entropy): how far the top softmax probabilities are from a peaked distribution.

Liu, Lochman & Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection", CVPR 2023.
With ``p`` the softmax of the logits, sorted in descending order, and ``M`` the number of largest kept::

    S(x) = -sum_{j <= M} p_j^gamma (1 - p_j)^gamma

A small ``gamma`` (0.1 in the paper) makes the score sensitive to probabilities near 0 and 1, where MSP
saturates. The paper keeps the ``M = 100`` largest of ImageNet's 1000 classes and all 10 of CIFAR-10's
(``top_classes=None``: all). Probabilities are clamped to [1e-7, 1 - 1e-7] as in pytorch-ood, which makes the
most confident inputs tie, as float32 softmax (the official code's) does anyway; computed in the logits' precision.
"""

from __future__ import annotations

import torch

from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.features import Outputs

PROBABILITY_FLOOR = 1e-7


def generalized_entropy(logits: torch.Tensor, gamma: float, top_classes: int | None = None) -> torch.Tensor:
    """(N, classes) logits -> (N,) sum of ``p^gamma (1 - p)^gamma`` over the ``top_classes`` largest ``p``."""
    probabilities = torch.softmax(logits, dim=1).clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if top_classes is not None:
        probabilities = probabilities.topk(min(top_classes, probabilities.shape[1]), dim=1).values
    return (probabilities.pow(gamma) * (1 - probabilities).pow(gamma)).sum(dim=1)


@DETECTORS.register("gen")
class GEN(OutputDetector):
    name = "GEN"

    def __init__(self, gamma: float = 0.1, top_classes: int | None = None) -> None:
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        if top_classes is not None and top_classes <= 0:
            raise ValueError(f"top_classes must be positive, got {top_classes}")
        self.gamma, self.top_classes = gamma, top_classes

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return -generalized_entropy(outputs.logits, self.gamma, self.top_classes)
