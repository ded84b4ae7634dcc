"""What every attack shares: its result, input checks and target choice.

Attacks work in pixel space: inputs are images in [0, 1] and the model owns its normalisation
(:class:`dlapps.models.Normalize`), so the ε-ball and the [0, 1] box are the same for every model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from dlapps.errors import AttackError

# A target for every sample: None (untargeted), a class index, one class per sample, or a rule.
TargetSpec = None | int | torch.Tensor | Literal["random", "least-likely"]


PIXEL = 1 / 255  # one grey level of an 8-bit image: studies state ε and step sizes in grey levels, as papers do


def eps_label(grey_levels: float) -> str:
    """``8`` -> ``"8/255"``: an ε given in grey levels, as papers write it."""
    return f"{grey_levels:g}/255"


@dataclass(frozen=True)
class AttackResult:
    """One attacked batch; every field has the batch as its first dimension.

    ``iterations`` counts the gradient steps after which the goal was first met: 0 when it was met before any
    step (by the clean input, which early stop then returns unchanged, or by PGD's random start), -1 when the
    returned example does not meet it.
    ``success`` says whether the returned example meets the goal: its prediction differs from the label
    (untargeted) or equals the target (targeted). Skipped samples (targeted, target equal to the label) are
    not attacked: their adversarial example is the input and they never count as a success.
    """

    adversarial: torch.Tensor  # float (N, C, H, W), in [0, 1] and within ε of the input
    labels: torch.Tensor  # int64 (N,), the true classes
    targets: torch.Tensor | None  # int64 (N,) for a targeted attack, else None
    success: torch.Tensor  # bool (N,)
    iterations: torch.Tensor  # int64 (N,)
    prob_before: torch.Tensor  # float (N,), true-class probability on the clean input
    prob_after: torch.Tensor  # float (N,), true-class probability on the adversarial example
    pred_before: torch.Tensor  # int64 (N,)
    pred_after: torch.Tensor  # int64 (N,)
    skipped: torch.Tensor  # bool (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def attacked(self) -> torch.Tensor:
        """Samples an attack success is measured on: classified correctly when clean, and not skipped."""
        return (self.pred_before == self.labels) & ~self.skipped

    def to(self, device: torch.device | str) -> AttackResult:
        return dataclasses.replace(
            self, **{f.name: _move(getattr(self, f.name), device) for f in dataclasses.fields(self)}
        )

    @classmethod
    def cat(cls, results: Sequence[AttackResult]) -> AttackResult:
        """Join the results of consecutive batches into one."""
        if not results:
            raise ValueError("no results to join")
        fields = {}
        for f in dataclasses.fields(cls):
            values = [getattr(r, f.name) for r in results]
            if any(v is None for v in values) and not all(v is None for v in values):
                raise ValueError("cannot join targeted and untargeted results")
            fields[f.name] = None if values[0] is None else torch.cat(values)
        return cls(**fields)


def _move(value: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if value is None else value.to(device)


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Images in [0, 1], one int64 label per image."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise AttackError("inputs must be a floating-point tensor of shape (N, ...), e.g. images (N, C, H, W)")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != x.shape[:1]:
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise AttackError(f"labels must be an int64 tensor of shape ({x.shape[0]},), got {got}")
    if x.numel() and not (x.min() >= 0 and x.max() <= 1):  # also false for NaN
        raise AttackError(
            f"inputs must be images in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]; "
            "attacks work in pixel space, so the model must own its normalisation (dlapps.models.Normalize)"
        )


def check_logits(output: object, batch: int) -> torch.Tensor:
    """The model's output must be a float (N, K) tensor, K >= 2 (checked without a device sync)."""
    if not isinstance(output, torch.Tensor):
        raise AttackError(f"the model must return a logits tensor, got {type(output).__name__}")
    if not output.is_floating_point() or output.ndim != 2 or output.shape[0] != batch or output.shape[1] < 2:
        raise AttackError(
            f"the model must return logits of shape ({batch}, classes) with classes >= 2, "
            f"got {output.dtype} {tuple(output.shape)}"
        )
    return output


def check_not_probabilities(logits: torch.Tensor) -> None:
    """Softmax outputs (non-negative rows summing to 1) would make the cross-entropy meaningless."""
    if logits.min() >= 0 and torch.allclose(logits.sum(1), logits.new_ones(()), atol=1e-3):
        raise AttackError("the model returns probabilities (rows sum to 1); attacks need logits: drop its softmax")


def check_labels(labels: torch.Tensor, num_classes: int, what: str = "labels") -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise AttackError(
            f"{what} span {labels.min().item()}..{labels.max().item()}, outside 0..{num_classes - 1} "
            f"for a model with {num_classes} classes"
        )


def resolve_targets(
    spec: TargetSpec, labels: torch.Tensor, clean_logits: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor | None:
    """The target class of every sample, or None for an untargeted attack.

    ``"random"`` draws a class other than the label uniformly (from ``generator``); ``"least-likely"`` takes
    the class the clean logits rank lowest among those other than the label. A fixed class or a tensor of
    classes may equal the label: :func:`dlapps.attacks.attack` skips and counts those samples.
    """
    num_classes = clean_logits.shape[1]
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "random":
            offset = torch.randint(1, num_classes, labels.shape, generator=generator, device=_device(generator))
            return (labels + offset.to(labels.device)) % num_classes
        if spec == "least-likely":
            return clean_logits.detach().scatter(1, labels[:, None], math.inf).argmin(1)
        raise AttackError(
            f"unknown target {spec!r}; use a class index, a tensor of classes, 'random' or 'least-likely'"
        )
    if isinstance(spec, int) and not isinstance(spec, bool):
        targets = torch.full_like(labels, spec)
    elif isinstance(spec, torch.Tensor) and spec.dtype == torch.int64 and spec.shape == labels.shape:
        targets = spec.to(labels.device)
    else:
        raise AttackError(f"targets must be a class index or an int64 tensor of shape {tuple(labels.shape)}")
    check_labels(targets, num_classes, "targets")
    return targets


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def uniform_noise(like: torch.Tensor, bound: float, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform noise in [-bound, bound] shaped like ``like``, drawn from ``generator`` (else the global RNG)."""
    if generator is None:
        return torch.empty_like(like).uniform_(-bound, bound)
    noise = torch.rand(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (2 * noise - 1).mul_(bound).to(like.device)
