"""Headline numbers that two models can be compared on, image by image.

A :class:`Measure` is a named statistic (accuracy, ECE, AUROC) with the per-image values it is computed from, kept
so that two models measured on the same images can be compared with a *paired* bootstrap: both resampled with
the same indices, so what the images have in common (easy or hard ones) cancels in the difference. The
difference is "within noise" when its 95% interval contains 0 (:func:`~dlapps.evaluate.bootstrap.within_noise`).

Each measure's samples are tuples of per-image tensors (accuracy: correctness; ECE: confidence and correctness;
AUROC: ID scores, then OOD scores, resampled apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from dlapps.evaluate.bootstrap import (
    BootstrapInterval,
    Statistic,
    batched_accuracy,
    batched_auroc,
    bootstrap_ci,
    paired_samples_difference_ci,
    within_noise,
)
from dlapps.evaluate.calibration import batched_expected_calibration_error

Kind = Literal["accuracy", "ece", "auroc"]
# kind -> (batched statistic, tensors per sample (one sample of each), whether higher is better)
STATISTICS: dict[str, tuple[Statistic, tuple[int, ...], bool]] = {
    "accuracy": (batched_accuracy, (1,), True),
    "ece": (batched_expected_calibration_error, (2,), False),
    "auroc": (batched_auroc, (1, 1), True),
}


@dataclass(frozen=True)
class Measure:
    """A named headline number of one model and the per-image samples behind it."""

    name: str
    kind: Kind
    samples: tuple[tuple[torch.Tensor, ...], ...]  # per sample, its per-image tensors (resampled together)

    def __post_init__(self) -> None:
        shape = tuple(len(sample) for sample in self.samples)
        if self.kind not in STATISTICS or STATISTICS[self.kind][1] != shape:
            raise ValueError(f"a {self.kind} measure takes samples of {STATISTICS.get(self.kind, (None, ()))[1]} "
                             f"tensors, got {shape}")  # fmt: skip

    @property
    def higher_is_better(self) -> bool:
        return STATISTICS[self.kind][2]

    def interval(self, *, resamples: int = 1000, seed: int = 0) -> BootstrapInterval:
        statistic = STATISTICS[self.kind][0]
        return bootstrap_ci(statistic, *self.samples, resamples=resamples,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip


def paired_difference(first: Measure, second: Measure, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``first - second`` with its paired bootstrap interval, on the same images; which is better, or within noise."""
    if (first.kind, [len(s[0]) for s in first.samples]) != (second.kind, [len(s[0]) for s in second.samples]):
        raise ValueError(f"{first.name!r} and {second.name!r} are not measured alike on the same images")
    found = paired_samples_difference_ci(STATISTICS[first.kind][0], first.samples, second.samples,
                                         resamples=resamples, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    better = None if within_noise(found) else (found.estimate > 0) == first.higher_is_better
    return {"name": first.name, "difference": found.to_record(), "first_better": better}


def compare_all(measures: Sequence[Sequence[Measure]], *, resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """For each measure that every model has: each model's value and interval, and each model after the first
    against the first (paired difference)."""
    names = [m.name for m in measures[0] if all(any(o.name == m.name for o in others) for others in measures[1:])]
    rows = []
    for name in names:
        found = [next(m for m in model if m.name == name) for model in measures]
        rows.append({
            "name": name, "kind": found[0].kind, "higher_is_better": found[0].higher_is_better,
            "values": [m.interval(resamples=resamples, seed=seed).to_record() for m in found],
            "against_first": [paired_difference(m, found[0], resamples=resamples, seed=seed) for m in found[1:]],
        })  # fmt: skip
    return rows
