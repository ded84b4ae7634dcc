"""SCALE: multiply all penultimate activations by ASH-S's sharpening factor, without pruning, then take the
energy.

Xu, Chen, Franchi & Yao, "Scaling for Training Time and Post-hoc Out-of-distribution Detection Enhancement",
ICLR 2024. With ``h`` an image's activations, ``s1 = sum(h)`` and ``s2`` the sum of its largest
``(100 - p)%``::

    S(x) = logsumexp_c (W h(x) exp(s1 / s2) + b)_c

The paper finds ASH's pruning hurts ID accuracy and that the scaling alone carries the OOD signal. Default
p = 85, the paper's (and OpenOOD's) setting; applied after the global pooling, as in the paper.
"""

from __future__ import annotations

import torch

from dlapps.ood.ash import check_percentile, keep_largest
from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.energy import energy_score
from dlapps.ood.features import Outputs


def scale_activations(activations: torch.Tensor, percentile: float) -> torch.Tensor:
    """(N, D) activations times ``exp(sum / sum of the largest 100 - percentile percent)``, row by row."""
    largest, _ = keep_largest(activations, percentile)
    return activations * torch.exp(activations.sum(dim=1, keepdim=True) / largest.sum(dim=1, keepdim=True))


@DETECTORS.register("scale")
class SCALE(OutputDetector):
    name = "SCALE"

    def __init__(self, percentile: float = 85.0) -> None:
        super().__init__()
        check_percentile(percentile)
        self.percentile = percentile

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return energy_score(self.head_logits(scale_activations(outputs.features, self.percentile)))
