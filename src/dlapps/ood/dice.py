"""DICE: sparsify the head, keeping the weights that contribute most on ID data, then take the energy.

Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection", ECCV 2022. With ``mu`` the mean
penultimate feature of the ID training data, the contribution of weight ``W_cd`` is ``V_cd = mu_d W_cd``; with
``t`` the ``p``-th percentile of all of ``V`` (p = 90 for CIFAR in the paper, 70 for ImageNet)::

    M = [V > t]                                   (keeps the top (100 - p)% of the weights)
    S(x) = logsumexp_c ((M * W) h(x) + b)_c

Dropping the weights that ID data hardly uses removes noise that OOD inputs excite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.energy import energy_score
from dlapps.ood.features import Outputs
from dlapps.ood.react import percentile


@DETECTORS.register("dice")
class DICE(OutputDetector):
    name = "DICE"
    needs_data = True
    reads_head = True

    def __init__(self, sparsity: float = 90.0) -> None:
        super().__init__()
        if not 0 <= sparsity < 100:
            raise ValueError(f"sparsity must be a percentile in [0, 100), got {sparsity}")
        self.sparsity = sparsity

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        weight = head.weight.detach()
        contribution = outputs.features.mean(dim=0) * weight
        self.weight = torch.where(contribution > percentile(contribution, self.sparsity), weight, 0)
        self.bias = None if head.bias is None else head.bias.detach()

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return energy_score(F.linear(outputs.features, self.weight, self.bias))
