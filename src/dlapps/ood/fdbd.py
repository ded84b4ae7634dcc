"""fDBD: the mean distance of the features to the predicted class's decision boundaries, relative to their
distance from the ID mean.

Liu & Qin, "Fast Decision Boundary based Out-of-Distribution Detector", ICML 2024. With the head ``f = W h + b``,
``yhat`` the predicted class and ``mu`` the mean penultimate feature of the ID training data::

    S(x) = 1 / (C - 1) sum_{c != yhat} |f_yhat(x) - f_c(x)| / ||w_yhat - w_c||  /  ||h(x) - mu||

Each term is the closed-form distance from ``h(x)`` to the hyperplane where classes ``yhat`` and ``c`` tie; ID
inputs lie further from the boundaries than OOD inputs at the same distance from the ID mean. No
hyper-parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from dlapps.ood.base import DETECTORS, OutputDetector, precise
from dlapps.ood.features import Outputs


def boundary_distance_ratio(
    features: torch.Tensor, logits: torch.Tensor, weight_gaps: torch.Tensor, mean: torch.Tensor
) -> torch.Tensor:
    """(N, D) features, (N, C) logits, (C, C) norms ``||w_i - w_j||`` (diagonal 1), (D,) ID mean -> (N,) score."""
    logits = precise(logits)
    top, predicted = logits.max(dim=1)
    boundary = ((top.unsqueeze(1) - logits) / weight_gaps[predicted]).sum(dim=1) / (logits.shape[1] - 1)
    return boundary / (precise(features) - mean).norm(dim=1).clamp_min(1e-8)


@DETECTORS.register("fdbd")
class FDBD(OutputDetector):
    name = "fDBD"
    needs_data = True
    reads_head = True

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        self.mean = precise(outputs.features).mean(dim=0)
        weight = precise(head.weight.detach())
        self.weight_gaps = torch.cdist(weight, weight).fill_diagonal_(1.0)  # the diagonal's terms are 0 / 1

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return boundary_distance_ratio(outputs.features, outputs.logits, self.weight_gaps, self.mean)
