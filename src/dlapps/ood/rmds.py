"""Relative Mahalanobis distance (RMDS): the class-conditional distance minus that to one background Gaussian.

Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, "A Simple Fix to Mahalanobis Distance for Improving Near-OOD
Detection", arXiv 2106.09022, 2021. With ``d_c`` the squared Mahalanobis distance of :mod:`mahalanobis` (class
means, tied covariance) and ``d_0`` that to a single Gaussian fitted to all ID training features::

    S(x) = -min_c (d_c(h(x)) - d_0(h(x)))

Subtracting ``d_0`` removes the directions that every ID image shares (which dominate ``d_c`` but say little
about the class), so near-OOD inputs stand out better. OpenOOD calls it RMDS, pytorch-ood ``RMD``.
"""

from __future__ import annotations

import torch
from torch import nn

from dlapps.ood.base import DETECTORS
from dlapps.ood.features import Outputs
from dlapps.ood.mahalanobis import Mahalanobis, class_means_and_precision, mahalanobis_score


@DETECTORS.register("rmds")
class RMDS(Mahalanobis):
    """``classes``: the outputs that are in-distribution classes, as for :class:`Mahalanobis`."""

    name = "RMDS"

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        super()._fit(outputs, head)
        one_class = torch.zeros_like(outputs.class_labels(self.name))  # the background Gaussian: all in one class
        self.background_mean, self.background_precision = class_means_and_precision(outputs.features, one_class, 1)

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        background = mahalanobis_score(outputs.features, self.background_mean, self.background_precision)
        return super().score_outputs(outputs) - background
