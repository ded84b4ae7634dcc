"""Mahalanobis distance to the closest class-conditional Gaussian with a shared (tied) covariance.

Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial
Attacks", NeurIPS 2018. On penultimate features ``h`` of the ID training data, with class means ``mu_c``::

    Sigma = 1/N sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T
    S(x)  = max_c -(h(x) - mu_c)^T Sigma^+ (h(x) - mu_c)

This is the paper's single-layer score without its input preprocessing and without the OOD-tuned ensemble
over layers (both need OOD validation data); OpenOOD calls this variant MDS. ``Sigma^+`` is the
pseudo-inverse, so rank-deficient features (dead ReLUs) do not break it.
"""

from __future__ import annotations

import torch
from torch import nn

from dlapps.errors import DataError
from dlapps.ood.base import DETECTORS, OutputDetector, precise
from dlapps.ood.features import Outputs


def class_means_and_precision(features: torch.Tensor, labels: torch.Tensor, classes: int | torch.Tensor):
    """Per-class means (classes, D) and the pseudo-inverse of the tied covariance (D, D).

    ``classes`` is the number of classes (labels 0..classes-1) or the tensor of the labels that are classes.
    """
    wanted = torch.arange(classes, device=labels.device) if isinstance(classes, int) else classes.to(labels.device)
    missing = wanted[~torch.isin(wanted, labels)].tolist()
    if missing:
        raise DataError(f"Mahalanobis needs ID training images of every class; none of class(es) {missing}")
    labels = torch.searchsorted(wanted, labels)  # class -> its row of the means
    counts = torch.bincount(labels, minlength=len(wanted))
    classes = len(wanted)
    features = precise(features)
    means = torch.zeros(classes, features.shape[1], dtype=features.dtype, device=features.device)
    means.index_add_(0, labels, features)
    means /= counts.unsqueeze(1).to(features.dtype)
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    return means, torch.linalg.pinv(covariance, hermitian=True)


def mahalanobis_score(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """(N, D) features -> (N,) minus the smallest squared Mahalanobis distance to a class mean."""
    diff = precise(features).unsqueeze(1) - means.unsqueeze(0)  # (N, classes, D)
    distances = torch.einsum("ncd,de,nce->nc", diff, precision, diff)
    return -distances.amin(dim=1)


@DETECTORS.register("mahalanobis")
class Mahalanobis(OutputDetector):
    """``classes``: the outputs that are in-distribution classes, for a model with more outputs than the ID
    data has classes (an ImageNet model on Imagenette); default: every output."""

    name = "Mahalanobis"
    needs_data = True

    def __init__(self, classes: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.classes = classes

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        if outputs.labels is None:
            raise DataError("Mahalanobis needs the labels of the ID training data")
        classes = outputs.logits.shape[1] if self.classes is None else torch.tensor(sorted(self.classes))
        self.means, self.precision = class_means_and_precision(outputs.features, outputs.labels, classes)

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return mahalanobis_score(outputs.features, self.means, self.precision)
