"""Percentile bootstrap confidence intervals over test images, every resample computed at once.

Efron's percentile bootstrap: draw ``B`` resamples of the images with replacement (index tensors (B, N) from a
seeded generator), compute the statistic on each, and report the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles of the B values (linear interpolation, as ``scipy.stats.bootstrap(method="percentile")``) around the
statistic on the images themselves.

- A **sample** is a tensor (N, ...) or a tuple of equal-length tensors resampled with the same indices (what
  belongs to one image: its confidence and correctness; two models' correctness on it). Separate samples are
  resampled independently (the ID and the OOD scores of an AUROC).
- A **statistic** takes each resampled tensor, (B, N, ...), as one positional argument, in order, and returns
  (B,) values: :func:`batched_accuracy` (accuracy, robust accuracy, corruption accuracy: means of 0/1
  vectors), :func:`~dlapps.evaluate.calibration.batched_expected_calibration_error` (confidence, correctness),
  :func:`batched_auroc` (ID scores, OOD scores as two samples).
- **AUROC**: ``P(s_ID > s_OOD) + P(s_ID = s_OOD) / 2`` (ties count half, ID positive, as in
  :mod:`dlapps.ood.metrics`), per resample from two binary searches of each ID score in the sorted OOD scores.
- **Paired comparison** of two models on the same images: the interval of ``statistic(first) -
  statistic(second)`` with the same indices for both; the difference is within noise when its interval
  contains 0.

Memory: the indices (B x N int64 per sample) are drawn at once, so the result does not depend on chunking; the
statistic runs on chunks of resamples holding at most ``max_elements`` resampled values each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

Sample = torch.Tensor | tuple[torch.Tensor, ...]
Statistic = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class BootstrapInterval:
    """A statistic on the test images and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int

    def to_record(self) -> dict[str, float | int]:
        return asdict(self)


def batched_accuracy(correct: torch.Tensor) -> torch.Tensor:
    """(B,) mean of each row of (B, N) 0/1 (or bool) correctness."""
    return correct.double().mean(dim=-1)


def batched_auroc(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> torch.Tensor:
    """(B,) AUROC of each row pair of (B, N_id) and (B, N_ood) scores (higher = more in-distribution)."""
    ood_sorted = ood_scores.double().sort(dim=-1).values
    id_scores = id_scores.double().contiguous()
    below = torch.searchsorted(ood_sorted, id_scores, side="left")
    not_above = torch.searchsorted(ood_sorted, id_scores, side="right")
    return (below + not_above).sum(dim=-1).double() / (2 * id_scores.shape[-1] * ood_scores.shape[-1])


def _as_tuple(sample: Sample) -> tuple[torch.Tensor, ...]:
    tensors = sample if isinstance(sample, tuple) else (sample,)
    if len({len(t) for t in tensors}) != 1 or len(tensors[0]) == 0:
        raise ValueError(f"a sample's tensors need one non-zero length, got {[len(t) for t in tensors]}")
    return tensors


def bootstrap_ci(
    statistic: Statistic,
    *samples: Sample,
    resamples: int = 1000,
    level: float = 0.95,
    generator: torch.Generator | None = None,
    max_elements: int = 2**24,
) -> BootstrapInterval:
    """The ``level`` percentile bootstrap interval of ``statistic`` over ``resamples`` resamples of ``samples``
    (see the module docstring). ``generator`` None: one seeded with 0, so the interval is reproducible."""
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got level {level}, resamples {resamples}")
    groups = [_as_tuple(sample) for sample in samples]
    generator = generator or torch.Generator().manual_seed(0)
    indices = [torch.randint(len(group[0]), (resamples, len(group[0])), generator=generator, device=generator.device)
               for group in groups]  # fmt: skip
    estimate = statistic(*(tensor[None] for group in groups for tensor in group))
    rows = max(1, max_elements // sum(tensor.numel() for group in groups for tensor in group))
    values = torch.cat([
        statistic(*(tensor[index[start : start + rows].to(tensor.device)]
                    for group, index in zip(groups, indices, strict=True) for tensor in group))
        for start in range(0, resamples, rows)
    ]).double()  # fmt: skip
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64, device=values.device)
    low, high = torch.quantile(values, quantiles).tolist()
    return BootstrapInterval(float(estimate), low, high, level, resamples)


def paired_difference_ci(statistic: Statistic, first: Sample, second: Sample, **options) -> BootstrapInterval:
    """The bootstrap interval of ``statistic(first) - statistic(second)`` on the same images, resampled with the
    same indices for both (so what the two have in common cancels); ``options`` as :func:`bootstrap_ci`."""
    return paired_samples_difference_ci(statistic, [first], [second], **options)


def paired_samples_difference_ci(
    statistic: Statistic, first: Sequence[Sample], second: Sequence[Sample], **options
) -> BootstrapInterval:
    """:func:`paired_difference_ci` for a statistic of several samples (an AUROC's ID and OOD scores): sample ``k``
    of ``first`` is resampled with the same indices as sample ``k`` of ``second``, the samples apart."""
    firsts, seconds = [_as_tuple(s) for s in first], [_as_tuple(s) for s in second]
    sizes = [len(sample) for sample in firsts]

    def difference(*resampled: torch.Tensor) -> torch.Tensor:
        mine, theirs, at = [], [], 0
        for size in sizes:  # each group holds the sample's tensors for first, then for second
            mine += resampled[at : at + size]
            theirs += resampled[at + size : at + 2 * size]
            at += 2 * size
        return statistic(*mine) - statistic(*theirs)

    groups = [(*a, *b) for a, b in zip(firsts, seconds, strict=True)]
    return bootstrap_ci(difference, *groups, **options)


def within_noise(difference: BootstrapInterval) -> bool:
    """Whether a paired difference's interval contains 0: the data do not tell the two apart at its level."""
    return difference.low <= 0 <= difference.high
