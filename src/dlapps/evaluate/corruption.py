"""A classifier under the common corruptions (:mod:`dlapps.data.corruptions`): accuracy and calibration per
corruption and severity, and the benchmark's summary numbers.

Hendrycks & Dietterich (2019) normalise by AlexNet's errors: ``CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}`` and
``relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^AlexNet_{s,c} - E^AlexNet_clean)``, mCE and relative mCE
being their means over the 15 corruptions. Without AlexNet's errors for a dataset, this module reports the
unnormalised quantities: the mean corruption accuracy (over corruptions and severities) and the relative
corruption error, the mean over corruptions and severities of ``E_{s,c} - E_clean`` (= clean accuracy - mean
corruption accuracy), i.e. the numerator of relative mCE divided by the number of severities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from dlapps.data import ImageArrays
from dlapps.data.corruptions import CORRUPTIONS, SEVERITIES, check_corruption, corrupt, corruption_seed
from dlapps.evaluate.calibration import confidence_reliability
from dlapps.models.hooks import eval_mode, model_device
from dlapps.models.layout import inference_batch


@dataclass(frozen=True)
class Predictions:
    """Per image: the predicted class and its softmax probability (what accuracy and ECE need), on the CPU."""

    predicted: torch.Tensor  # int64 (N,)
    confidence: torch.Tensor  # float32 (N,)

    def accuracy(self, labels: torch.Tensor) -> float:
        return (self.predicted == labels).double().mean().item()

    def ece(self, labels: torch.Tensor, bins: int = 15) -> float:
        return confidence_reliability(self.confidence, self.predicted == labels, bins).ece


@dataclass(frozen=True)
class CorruptionEvaluation:
    """A model's predictions on clean images and on each (corruption, severity) of them."""

    labels: torch.Tensor  # int64 (N,), on the CPU
    clean: Predictions
    corrupted: dict[tuple[str, int], Predictions]
    skipped: dict[str, str] = field(default_factory=dict)  # corruption -> why it cannot corrupt these images

    @property
    def names(self) -> tuple[str, ...]:
        """The corruptions evaluated, in order."""
        return tuple(dict.fromkeys(name for name, _ in self.corrupted))

    def accuracy(self, name: str, severity: int) -> float:
        return self.corrupted[name, severity].accuracy(self.labels)

    def ece(self, name: str, severity: int, bins: int = 15) -> float:
        return self.corrupted[name, severity].ece(self.labels, bins)

    @property
    def clean_accuracy(self) -> float:
        return self.clean.accuracy(self.labels)


def _predictions(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's predicted class and its softmax probability, on the CPU (logits are not kept: 75 copies of an
    ImageNet test set's would not fit in memory)."""
    confidence, predicted = logits.float().softmax(1).max(1)
    return predicted.cpu(), confidence.cpu()


def _joined(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Predictions:
    predicted, confidence = zip(*batches, strict=True)
    return Predictions(torch.cat(predicted), torch.cat(confidence))


@torch.no_grad()
def evaluate_corruptions(
    model: nn.Module,
    data: ImageArrays,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    *,
    seed: int = 0,
    batch_size: int | None = None,
) -> CorruptionEvaluation:
    """``model`` (taking images in [0, 1], in eval mode here) on ``data`` clean and under each of ``names`` (default:
    all registered corruptions) at each of ``severities``. Each batch moves to the model's device once and is
    corrupted there, one corruption at a time, so no more than one corrupted batch exists at once. Each
    (corruption, severity) draws from its own CPU generator seeded by :func:`corruption_seed`: results depend on
    ``seed`` and the batch size only."""
    names = tuple(CORRUPTIONS.names() if names is None else names)
    severities = tuple(severities)
    for name in names:
        for severity in severities:
            check_corruption(name, severity)
    skipped = _unusable(names, severities, data)
    names = tuple(name for name in names if name not in skipped)
    device = model_device(model)
    batch_size = batch_size or inference_batch(data.image_shape, device)
    generators = {(name, severity): torch.Generator().manual_seed(corruption_seed(seed, name, severity))
                  for name in names for severity in severities}  # fmt: skip
    clean: list[tuple[torch.Tensor, torch.Tensor]] = []
    corrupted: dict[tuple[str, int], list[tuple[torch.Tensor, torch.Tensor]]] = {key: [] for key in generators}
    with eval_mode(model):
        for start in range(0, len(data), batch_size):
            images = data.images[start : start + batch_size].to(device).float() / 255
            clean.append(_predictions(model(images)))
            for (name, severity), generator in generators.items():
                corrupted_images = corrupt(images, name, severity, generator=generator)
                corrupted[name, severity].append(_predictions(model(corrupted_images)))
    return CorruptionEvaluation(
        labels=data.labels.cpu(),
        clean=_joined(clean),
        corrupted={key: _joined(batches) for key, batches in corrupted.items()},
        skipped=skipped,
    )


def _unusable(names: tuple[str, ...], severities: tuple[int, ...], data: ImageArrays) -> dict[str, str]:
    """The corruptions that cannot corrupt images of this size (a blur wider than a tiny image...), with why: tried
    on one image at each severity."""
    probe = data.images[:1].float() / 255
    skipped = {}
    for name in names:
        for severity in severities:
            try:
                corrupt(probe, name, severity, generator=torch.Generator().manual_seed(0))
            except (RuntimeError, ValueError) as exc:
                skipped[name] = f"cannot corrupt {tuple(probe.shape[-2:])}-pixel images at severity {severity} ({exc})"
                break
    return skipped


def mean_corruption_accuracy(evaluation: CorruptionEvaluation) -> float:
    """Accuracy averaged over every evaluated corruption and severity."""
    accuracies = [evaluation.accuracy(name, severity) for name, severity in evaluation.corrupted]
    return sum(accuracies) / len(accuracies) if accuracies else float("nan")


def relative_corruption_error(evaluation: CorruptionEvaluation) -> float:
    """Mean over corruptions and severities of (corrupted error - clean error) = clean accuracy - mean corruption
    accuracy: Hendrycks & Dietterich's relative mCE without the AlexNet normalisation (see the module)."""
    return evaluation.clean_accuracy - mean_corruption_accuracy(evaluation)
