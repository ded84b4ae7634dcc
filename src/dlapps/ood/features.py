"""Model outputs for detectors: logits plus the features feeding the classifier head, read by a hook.

The *head* is the model's final ``nn.Linear`` (by default the last one registered, which is the output layer
of every dlapps classifier); its input is the penultimate feature vector that Mahalanobis, KNN, ViM and
ReAct work on. Hooks are removed whatever happens, so a failed forward never leaves one behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from dlapps.data.arrays import ImageArrays
from dlapps.errors import DataError
from dlapps.models.hooks import capture, model_device, require_eval
from dlapps.models.layout import inference_batch

# What detectors accept as data: a whole split, or batches of (images in [0, 1], labels) like a DataLoader's.
Batches = ImageArrays | Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Outputs:
    logits: torch.Tensor  # (N, classes)
    features: torch.Tensor  # (N, D): the head's input, flattened
    labels: torch.Tensor | None = None  # (N,) where known

    def class_labels(self, detector: str) -> torch.Tensor:
        """The labels, or a :class:`DataError` that says ``detector`` needs them."""
        if self.labels is None:
            raise DataError(f"{detector} needs the labels of the ID training data")
        return self.labels

    def id_classes(self, classes: tuple[int, ...] | None) -> torch.Tensor:
        """The outputs that are ID classes, ascending: ``classes``, or every output when None."""
        if classes is None:
            return torch.arange(self.logits.shape[1], device=self.logits.device)
        return torch.tensor(sorted(classes), device=self.logits.device)


def head_outputs(model: nn.Module, inputs: torch.Tensor, head: str) -> Outputs:
    """One forward pass: logits and the flattened input of ``head``."""
    with capture(model, head, inputs=True) as features:
        logits = model(inputs)
    return Outputs(logits=logits, features=features[-1].flatten(1))


def iter_batches(
    data: Batches, batch_size: int | None, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images in [0, 1], labels)`` batches on ``device``; uint8 images are moved one batch at a time, in
    batches of ``batch_size`` (None: :func:`~dlapps.models.layout.inference_batch`)."""
    if isinstance(data, ImageArrays):
        if len(data) == 0:
            raise DataError(f"{data.source}: the set is empty")
        batch_size = batch_size or inference_batch(data.image_shape, device)
        for start in range(0, len(data), batch_size):
            images = data.images[start : start + batch_size].to(device)
            yield images.float() / 255.0, data.labels[start : start + batch_size].to(device)
        return
    for inputs, labels in data:
        yield inputs.to(device), labels.to(device)


@torch.no_grad()
def collect_outputs(model: nn.Module, data: Batches, head: str, batch_size: int | None = None) -> Outputs:
    """Logits, head features and labels of ``model`` over all of ``data``, on the model's device."""
    require_eval(model)
    parts = [(head_outputs(model, x, head), y) for x, y in iter_batches(data, batch_size, model_device(model))]
    if not parts:
        raise DataError("no batches to compute model outputs on: the data is empty")
    return Outputs(
        logits=torch.cat([o.logits for o, _ in parts]),
        features=torch.cat([o.features for o, _ in parts]),
        labels=torch.cat([y for _, y in parts]),
    )
