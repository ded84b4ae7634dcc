"""The loop behind every attack here: signed-gradient steps projected onto the ε-ball ∩ [0, 1].

FGSM, iterative FGSM (BIM), PGD and MI-FGSM differ only in where they start (the input, or a uniform random
point of the ball), in their step rule (the gradient's sign, or the sign of a momentum of L1-normalised
gradients) and in their step count and size, so they are parameters here, not copies of a loop.

:func:`attack_in_slots` measures: each sample stops as soon as it meets its goal, and its slot in the batch
is refilled with the next sample waiting, so the batch keeps a static shape (cuDNN never re-tunes; a loop
that shrank its batches instead ran 15x slower) and no compute goes to samples that are done.
:func:`perturb` is the plain fixed-batch loop that adversarial training needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks.base import check_logits, uniform_noise


def start_point(
    x: torch.Tensor, eps: float, random_start: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(start, lower, upper)``: the start and the per-pixel box, the ε-ball around ``x`` ∩ [0, 1]."""
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    start = torch.min(torch.max(x + uniform_noise(x, eps, generator), lower), upper) if random_start else x
    return start, lower, upper


def forward(model: nn.Module, adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input that requires grad, logits)``, ready for :func:`loss_gradient`."""
    adv = adv.detach().requires_grad_(True)
    with torch.enable_grad():
        return adv, check_logits(model(adv), len(adv))


def loss_gradient(adv: torch.Tensor, logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Gradient of the batch-mean cross-entropy of ``goal``, negated for a targeted attack.

    The mean (not the sum), as in torchattacks, so that results agree with it bit for bit; the sign of the
    gradient does not depend on the 1/N scale. Only the input gets a gradient: parameters' ``.grad`` stay.
    """
    with torch.enable_grad():
        loss = F.cross_entropy(logits.float(), goal)
        (grad,) = torch.autograd.grad(-loss if targeted else loss, adv)
    return grad


def signed_step(
    adv: torch.Tensor,
    grad: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    alpha: float,
    momentum: torch.Tensor | None = None,
    decay: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of size ``alpha`` along the gradient's sign, or, given ``momentum`` and its ``decay``, along
    the sign of ``decay · momentum + grad / mean|grad|`` (MI-FGSM); then the projection onto the box."""
    if momentum is not None:
        scale = grad.abs().mean(tuple(range(1, grad.ndim)), keepdim=True)
        momentum = grad / scale.clamp_min(torch.finfo(grad.dtype).tiny) + decay * momentum
        grad = momentum
    return torch.min(torch.max(adv.detach() + alpha * grad.sign(), lower), upper), momentum


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = False,
    decay: float | None = None,
) -> torch.Tensor:
    """Untargeted adversarial examples after exactly ``steps`` steps for every sample, nothing measured;
    ``decay``: MI-FGSM's momentum factor (None: plain signed steps).

    For adversarial training: the model runs in the mode it is in (random starts from the global RNG),
    and there is no forward pass beyond the ones the steps need.
    """
    adv, lower, upper = start_point(x.detach(), eps, random_start, None)
    momentum = None if decay is None else torch.zeros_like(adv)
    for _ in range(steps):
        adv, logits = forward(model, adv)
        grad = loss_gradient(adv, logits, labels, targeted=False)
        adv, momentum = signed_step(adv, grad, lower, upper, alpha, momentum, decay)
    return adv.detach()


def meets_goal(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Untargeted: the prediction is not ``goal`` (the label); targeted: it is ``goal`` (the target)."""
    predictions = logits.argmax(1)
    return predictions == goal if targeted else predictions != goal


@dataclass(frozen=True)
class Budget:
    """How each sample is attacked: within the L∞ ball of radius ``eps``, at most ``steps`` steps of ``alpha``,
    towards or away from its goal, from the input or a random point of the ball, along the gradient's sign or a
    momentum of it (MI-FGSM's ``decay``), stopping once the goal is met with ``early_stop``."""

    eps: float
    alpha: float
    steps: int
    targeted: bool = False
    random_start: bool = False
    decay: float | None = None
    early_stop: bool = True


def attack_in_slots(
    model: nn.Module,
    x: torch.Tensor,
    goal: torch.Tensor,
    budget: Budget,
    *,
    slots: int,
    generator: torch.Generator | None = None,
    on_done: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attack every sample of ``x`` through a batch of ``slots`` samples: ``(adversarial examples, the step
    count at which each first met its goal (-1: never), the logits of each returned example)``.

    A sample leaves its slot after ``budget.steps`` steps, or as soon as it meets its goal with
    ``budget.early_stop``; the next sample takes the slot. ``on_done`` is called with the number of samples that
    left each round.
    """
    adversarial, first_met, logits_after = x.clone(), torch.full((len(x),), -1, device=x.device), None
    n = min(slots, len(x))
    sample = torch.full((n,), -1, dtype=torch.int64, device=x.device)  # -1: an empty slot
    adv, lower, upper = (torch.zeros((n, *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in range(3))
    slot_goal = torch.zeros(n, dtype=torch.int64, device=x.device)
    taken = torch.zeros(n, dtype=torch.int64, device=x.device)  # steps taken by the slot's sample
    momentum = torch.zeros_like(adv) if budget.decay is not None else None
    waiting = torch.arange(len(x), device=x.device)

    def refill(free: torch.Tensor) -> None:
        nonlocal waiting
        incoming, waiting = waiting[: len(free)], waiting[len(free) :]
        free = free[: len(incoming)]
        sample[free] = incoming
        slot_goal[free] = goal[incoming]
        adv[free], lower[free], upper[free] = start_point(x[incoming], budget.eps, budget.random_start, generator)
        taken[free] = 0
        if momentum is not None:
            momentum[free] = 0

    refill(torch.arange(n, device=x.device))
    while True:
        occupied = sample >= 0
        if not occupied.any():
            return adversarial, first_met, logits_after
        adv_in, logits = forward(model, adv)
        if logits_after is None:
            logits_after = torch.zeros((len(x), logits.shape[1]), dtype=torch.float32, device=x.device)
        met = meets_goal(logits.detach(), slot_goal, budget.targeted) & occupied
        index = sample.clamp(min=0)
        first = met & (first_met[index] < 0)
        first_met[index[first]] = taken[first]
        done = occupied & ((met & budget.early_stop) | (taken == budget.steps))
        adversarial[sample[done]] = adv[done]
        logits_after[sample[done]] = logits.detach()[done].to(logits_after.dtype)
        moving = occupied & ~done
        if moving.any():
            grad = loss_gradient(adv_in, logits, slot_goal, budget.targeted)
            stepped, stepped_momentum = signed_step(adv_in, grad, lower, upper, budget.alpha, momentum, budget.decay)
            keep = moving.view(-1, *[1] * (x.ndim - 1))
            adv = torch.where(keep, stepped, adv)
            if momentum is not None:
                momentum = torch.where(keep, stepped_momentum, momentum)
            taken += moving
        free = done.nonzero().flatten()
        sample[free] = -1
        refill(free)
        if on_done is not None:
            on_done(len(free))
