"""Deep k-nearest neighbours: distance to the k-th nearest ID training feature, on the unit sphere.

Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022. With ``z = h /
||h||`` the normalised penultimate features and ``Z`` those of the ID training data (the bank)::

    S(x) = -|| z(x) - z_(k)(x) ||,   z_(k)(x) = the k-th nearest element of Z to z(x)

For unit vectors ``||z - z'||^2 = 2 - 2 z.z'``, so a matrix product and a top-k find it, batched on the
device (no faiss needed). The paper uses k = 50 with the whole CIFAR-10 training set as the bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.errors import DataError
from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.features import Outputs


def knn_score(features: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """(N, D) features, (M, D) unit-norm bank -> (N,) minus the distance to the k-th nearest bank vector."""
    similarity = F.normalize(features.float(), dim=1) @ bank.T
    kth = similarity.topk(k, dim=1).values[:, -1]
    return -(2 - 2 * kth).clamp_min(0).sqrt()


@DETECTORS.register("knn")
class KNN(OutputDetector):
    name = "KNN"
    needs_data = True

    def __init__(self, k: int = 50) -> None:
        super().__init__()
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        self.k = k

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        if len(outputs.features) < self.k:
            raise DataError(
                f"KNN with k={self.k} needs at least {self.k} ID training images, got {len(outputs.features)}"
            )
        self.bank = F.normalize(outputs.features.float(), dim=1)

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return knn_score(outputs.features, self.bank, self.k)
