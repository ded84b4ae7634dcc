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


def class_means(
    features: torch.Tensor, labels: torch.Tensor, classes: int | torch.Tensor, images: str = "ID training images"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class means (classes, D), in float64 where the device has it, and each image's row among them.

    ``classes`` is the number of classes (labels 0..classes-1) or the tensor of the labels that are classes;
    every one needs ``images`` (a :class:`DataError` names the missing).
    """
    wanted = torch.arange(classes, device=labels.device) if isinstance(classes, int) else classes.to(labels.device)
    missing = wanted[~torch.isin(wanted, labels)].tolist()
    if missing:
        raise DataError(f"class statistics need {images} of every class; none of class(es) {missing}")
    rows = torch.searchsorted(wanted, labels)  # class -> its row of the means
    counts = torch.bincount(rows, minlength=len(wanted))
    features = precise(features)
    means = torch.zeros(len(wanted), features.shape[1], dtype=features.dtype, device=features.device)
    means.index_add_(0, rows, features)
    return means / counts.unsqueeze(1).to(features.dtype), rows


def class_means_and_precision(features: torch.Tensor, labels: torch.Tensor, classes: int | torch.Tensor):
    """Per-class means (classes, D) and the pseudo-inverse of the tied covariance (D, D); ``classes`` as for
    :func:`class_means`."""
    means, rows = class_means(features, labels, classes)
    centred = precise(features) - means[rows]
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
        labels, classes = outputs.class_labels(self.name), outputs.id_classes(self.classes)
        self.means, self.precision = class_means_and_precision(outputs.features, labels, classes)

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return mahalanobis_score(outputs.features, self.means, self.precision)
