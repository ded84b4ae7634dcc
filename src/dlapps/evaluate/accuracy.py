"""Accuracy of a classifier's outputs: top-k, per class, and the confusion matrix."""

from __future__ import annotations

import torch
from torch import nn

from dlapps.data import ImageArrays
from dlapps.models.hooks import eval_mode, model_device
from dlapps.models.layout import inference_batch


@torch.no_grad()
def predict(model: nn.Module, data: ImageArrays, batch_size: int | None = None) -> torch.Tensor:
    """The model's logits (N, classes) for a whole split, batched on the model's device (in eval mode); on the CPU.
    ``batch_size`` None: :func:`~dlapps.models.layout.inference_batch`."""
    device = model_device(model)
    batch_size = batch_size or inference_batch(data.image_shape, device)
    with eval_mode(model):
        parts = [model(data.images[i : i + batch_size].to(device).float() / 255).float().cpu()
                 for i in range(0, len(data), batch_size)]  # fmt: skip
    return torch.cat(parts)


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` highest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1).double().mean().item()


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) accuracy on the samples of each class; NaN for a class without samples."""
    correct = (logits.argmax(1) == labels).double()
    totals = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    return hits / totals  # 0 / 0 is NaN


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    index = labels * num_classes + logits.argmax(1)
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)
