"""ReAct: clip penultimate activations at a high percentile of their ID values, then take the energy.

Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified Activations", NeurIPS 2021. With ``c``
the ``p``-th percentile of all penultimate activations over the ID training data (p = 90 in the paper)::

    S(x) = logsumexp_c (W min(h(x), c) + b)_c

OOD inputs tend to cause a few abnormally large activations; clipping them brings the logits of OOD inputs
down more than those of ID inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.energy import energy_score
from dlapps.ood.features import Outputs


def percentile(values: torch.Tensor, p: float) -> torch.Tensor:
    """The ``p``-th percentile of all of ``values``, linearly interpolated (NumPy's default method)."""
    ordered = values.flatten().sort().values
    position = p / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@DETECTORS.register("react")
class ReAct(OutputDetector):
    name = "ReAct"
    needs_data = True
    reads_head = True

    def __init__(self, percentile: float = 90.0) -> None:
        super().__init__()
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.percentile = percentile

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        self.threshold = percentile(outputs.features, self.percentile)
        self.weight, self.bias = head.weight.detach(), head.bias.detach() if head.bias is not None else None

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return energy_score(F.linear(outputs.features.clamp(max=self.threshold), self.weight, self.bias))
