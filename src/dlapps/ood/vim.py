"""ViM (virtual-logit matching): energy minus the scaled norm of the feature residual off the principal space.

Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022. With the head
``f = W h + b``, origin ``o = -W^+ b`` (where all logits vanish), and ``R`` the eigenvectors of the
``N - D`` smallest eigenvalues of ``1/n sum_i (h_i - o)(h_i - o)^T`` over ID training features::

    r(x)  = || R^T (h(x) - o) ||                         (residual off the principal D-dim subspace)
    alpha = sum_i max_c f_c(x_i) / sum_i r(x_i)           (over the ID training data)
    S(x)  = logsumexp_c f_c(x) - alpha * r(x)

``S`` is the official code's ID score (its ranking equals the paper's virtual-logit softmax). The principal
dimension ``D`` follows the paper: 1000 for N >= 2048 features, 512 for N >= 768, else N / 2.
"""

from __future__ import annotations

import torch
from torch import nn

from dlapps.errors import ConfigError
from dlapps.ood.base import DETECTORS, OutputDetector, precise
from dlapps.ood.features import Outputs


def principal_dim(features: int) -> int:
    """The paper's choice of principal-subspace dimension for ``features``-dimensional features."""
    return 1000 if features >= 2048 else 512 if features >= 768 else features // 2


def residual_norm(features: torch.Tensor, origin: torch.Tensor, residual_basis: torch.Tensor) -> torch.Tensor:
    """(N, D) features -> (N,) norm of ``features - origin`` projected on the residual basis."""
    return ((precise(features) - origin) @ residual_basis).norm(dim=1)


@DETECTORS.register("vim")
class ViM(OutputDetector):
    name = "ViM"
    needs_data = True
    reads_head = True

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        features = precise(outputs.features)
        n_features = features.shape[1]
        dim = self.dim or principal_dim(n_features)
        if dim >= n_features:
            raise ConfigError(f"ViM's principal dimension {dim} must be below the feature size {n_features}")
        weight = precise(head.weight.detach())
        bias = precise(head.bias.detach()) if head.bias is not None else torch.zeros_like(weight[:, 0])
        self.origin = -torch.linalg.pinv(weight) @ bias
        centred = features - self.origin
        _, vectors = torch.linalg.eigh(centred.T @ centred / len(features))  # eigenvalues ascending
        self.residual_basis = vectors[:, : n_features - dim]
        residual = residual_norm(outputs.features, self.origin, self.residual_basis)
        self.alpha = precise(outputs.logits).amax(dim=1).sum() / residual.sum()

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        residual = residual_norm(outputs.features, self.origin, self.residual_basis)
        return torch.logsumexp(precise(outputs.logits), dim=1) - self.alpha * residual
