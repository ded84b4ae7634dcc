"""Maximum softmax probability (MSP): ``S(x) = max_c softmax(f(x) / T)_c``.

Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural
Networks", ICLR 2017. ``T = 1`` is MSP; ODIN reuses it with a large ``T``. Computed in float64: in float32 a
third of CIFAR-10 test images get exactly 1.0 from a 92% ResNet-20, and those ties blur the ranking.
"""

from __future__ import annotations

import torch

from dlapps.ood.base import DETECTORS, OutputDetector, precise
from dlapps.ood.features import Outputs


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N, classes) logits -> (N,) largest softmax probability at ``temperature``."""
    return torch.softmax(precise(logits) / temperature, dim=1).amax(dim=1)


@DETECTORS.register("msp")
class MSP(OutputDetector):
    name = "MSP"

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return max_softmax(outputs.logits)
