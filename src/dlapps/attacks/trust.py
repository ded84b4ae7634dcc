"""Can a robust accuracy be believed? The checks of Carlini et al. 2019 ("On evaluating adversarial robustness")
that catch an evaluation the model has fooled, each one flagged with its evidence:

- robust accuracy must fall as ε grows, and reach about zero at a very large ε (everything can be changed there);
- a score-based attack (Square) must not break images that the gradient attacks did not: if it does, the
  gradients lie (gradient masking);
- a stronger attack (more iterations, restarts) must not lower robust accuracy much: if it does, the attack had
  not converged and the number is an overestimate;
- the loss gradient must be finite and not zero on the images: zero or non-finite gradients (shattered or
  vanishing) make every gradient attack blind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks.api import attack_arrays
from dlapps.attacks.attack import ATTACKS, Attack
from dlapps.attacks.base import eps_label
from dlapps.attacks.ensemble import EnsembleResult, Memo, no_memo
from dlapps.data import ImageArrays
from dlapps.models.hooks import model_device, model_mode
from dlapps.models.layout import inference_batch

POINT = 0.01  # one point of accuracy: the most a stronger attack may still take, and the most left at a huge ε
BAD_GRADIENTS = 0.05  # the share of images with zero or non-finite gradients beyond which attacks are blind


@dataclass(frozen=True)
class Check:
    check: str  # what is checked, in the user's words
    flagged: bool
    evidence: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def falls_with_eps(sweep: Sequence[tuple[str, float]]) -> Check:
    """``sweep``: (ε label, robust accuracy) in increasing ε."""
    rises = [(a, b, ra, rb) for (a, ra), (b, rb) in zip(sweep, sweep[1:], strict=False) if rb > ra + POINT]
    evidence = "; ".join(f"{ra:.1%} at {a}, {rb:.1%} at {b}" for a, b, ra, rb in rises)
    return Check("robust accuracy falls as ε grows", bool(rises),
                 evidence or "never rises by more than a point from one ε to the next")  # fmt: skip


def vanishes_at_large_eps(label: str, robust: float) -> Check:
    return Check(f"robust accuracy reaches ~0 at ε = {label}", robust > POINT, f"{robust:.1%} left at {label}")


def no_gradient_masking(stages: Sequence[dict[str, Any]], images: int) -> Check:
    """Flagged when the attacks that use no gradient break more than a point of images the gradient attacks left."""
    free = [s for s in stages if not ATTACKS[s["attack"]].uses_gradient]
    broke = sum(s["broke"] for s in free)
    names = " and ".join(s["attack"] for s in free) or "no score-based attack"
    return Check("score-based attacks find nothing the gradient attacks missed", broke > POINT * images,
                 f"{names} broke {broke} of {images} images after the gradient attacks")  # fmt: skip


def converged(robust: float, stronger_robust: float, stronger: str) -> Check:
    return Check("a stronger attack changes nothing", robust - stronger_robust > POINT,
                 f"{robust:.1%} robust, {stronger_robust:.1%} after {stronger} on the survivors")  # fmt: skip


def gradients_are_informative(health: dict[str, Any]) -> Check:
    images, bad = health["images"], health["zero"] + health["non_finite"]
    if not health["differentiable"]:
        return Check("loss gradients are finite and non-zero", True, "the model's output has no gradient")
    return Check("loss gradients are finite and non-zero", bad > BAD_GRADIENTS * images,
                 f"{health['zero']} of {images} images have a zero gradient, {health['non_finite']} a non-finite one")  # fmt: skip


def gradient_health(model: nn.Module, data: ImageArrays, batch_size: int | None = None) -> dict[str, Any]:
    """How many images have a cross-entropy gradient that is zero everywhere, or not finite (non-finite logits
    included); ``differentiable`` is False where the model's output has no gradient at all."""
    device = model_device(model)
    batch = batch_size or inference_batch(data.image_shape, device)
    zero = non_finite = 0
    with model_mode(model, False):
        for images, labels in zip(data.images.split(batch), data.labels.split(batch), strict=True):
            x = (images.to(device).float() / 255).requires_grad_(True)
            with torch.enable_grad():
                logits = model(x).float()
                loss = F.cross_entropy(logits, labels.to(device), reduction="sum")
                if not loss.requires_grad:
                    return {"images": len(data), "zero": 0, "non_finite": 0, "differentiable": False}
                (grad,) = torch.autograd.grad(loss, x)
            flat = grad.flatten(1)
            broken = ~torch.isfinite(flat).all(1) | ~torch.isfinite(logits).all(1)
            non_finite += int(broken.sum())
            zero += int(((flat == 0).all(1) & ~broken).sum())
    return {"images": len(data), "zero": zero, "non_finite": non_finite, "differentiable": True}


def trust_checks(
    model: nn.Module,
    data: ImageArrays,
    headline: EnsembleResult,
    sweep: Sequence[tuple[float, float]],
    *,
    stronger: Attack,
    large: Attack,
    batch_size: int | None = None,
    memo: Memo = no_memo,
) -> list[Check]:
    """Every check, on the images ``headline`` (an ensemble at the reported ε) was run on; ``sweep`` holds
    (ε, robust accuracy) over the ε sweep. ``stronger`` attacks the ensemble's survivors again; ``large`` (at a
    very large ε) the correctly classified images."""

    def broken(attack: Attack, on: torch.Tensor, seed: int) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            index = on.nonzero().flatten()
            if not len(index):
                return {"broke": 0}
            result = attack_arrays(model, data.take(index), attack, batch_size=batch_size,
                                   generator=torch.Generator().manual_seed(seed))  # fmt: skip
            return {"broke": int(result.success.sum())}

        return memo(f"trust-{attack.name}", {"attack": repr(attack), "on": int(on.sum()), "seed": seed}, compute)

    images = len(headline.correct)
    after_stronger = headline.robust_accuracy - broken(stronger, headline.robust, 1)["broke"] / images
    left_at_large = headline.clean_accuracy - broken(large, headline.correct, 2)["broke"] / images
    return [
        falls_with_eps([(eps_label(e), r) for e, r in sweep]),
        vanishes_at_large_eps(
            eps_label(large.eps * 255) if large.threat_name == "linf" else f"{large.eps:g}", left_at_large
        ),
        no_gradient_masking(headline.stages, images),
        converged(
            headline.robust_accuracy,
            after_stronger,
            f"{stronger.name} with {stronger.steps} steps and {stronger.restarts} restarts",
        ),  # fmt: skip
        gradients_are_informative(gradient_health(model, data, batch_size)),
    ]
