"""The loop behind every attack: an :class:`~dlapps.attacks.attack.Attack` steps a batch of per-sample state.

:func:`run_in_slots` measures: each sample stops as soon as it meets its goal, and its slot in the batch is
refilled with the next sample waiting, so the batch keeps a static shape (cuDNN never re-tunes; a loop that
shrank its batches instead ran 15x slower) and no compute goes to samples that are done.
:func:`perturb` is the plain fixed-batch loop that adversarial training needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dlapps.attacks.attack import Attack, State
from dlapps.attacks.base import check_logits


def forward(model: nn.Module, adv: torch.Tensor, with_gradient: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, logits)``; with ``with_gradient`` the input requires grad, ready for :meth:`Attack.gradient`."""
    if not with_gradient:
        with torch.no_grad():
            return adv, check_logits(model(adv), len(adv))
    adv = adv.detach().requires_grad_(True)
    with torch.enable_grad():
        return adv, check_logits(model(adv), len(adv))


def meets_goal(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Untargeted: the prediction is not ``goal`` (the label); targeted: it is ``goal`` (the target)."""
    predictions = logits.argmax(1)
    return predictions == goal if targeted else predictions != goal


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *[1] * (like.ndim - 1))


def perturb(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, attack: Attack) -> torch.Tensor:
    """Untargeted adversarial examples after exactly ``attack.steps`` steps for every sample, nothing measured.

    For adversarial training: the model runs in the mode it is in (random starts from the global RNG), and there
    is no forward pass beyond the ones the steps need (and the clean one, for an attack that reads it).
    """
    state: State = {"x": x.detach(), "goal": labels, "taken": torch.zeros_like(labels)}
    if attack.uses_clean_logits:
        with torch.no_grad():
            state["clean"] = model(x).float()
    state |= attack.start(state, 0, None)
    for _ in range(attack.steps):
        adv, logits = forward(model, state["adv"], attack.uses_gradient)
        state |= attack.step(adv, logits, state, False, None)
        state["taken"] = state["taken"] + 1
    return state["adv"].detach()


def run_in_slots(
    model: nn.Module,
    attack: Attack,
    samples: State,
    *,
    targeted: bool,
    run: int = 0,
    slots: int,
    generator: torch.Generator | None = None,
    on_done: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``attack`` on every sample (``samples`` holds ``x``, ``goal`` and ``clean``) through a batch of
    ``slots`` samples: ``(adversarial examples, the step count at which each first met its goal (-1: never), the
    logits of each returned example)``. ``run`` counts the attack's restarts.

    A sample leaves its slot after ``attack.steps`` steps, or as soon as it meets its goal with
    ``attack.early_stop``; the next sample takes the slot. ``on_done`` is called with the number of samples that
    left each round.
    """
    x = samples["x"]
    adversarial, first_met, logits_after = x.clone(), torch.full((len(x),), -1, device=x.device), None
    n = min(slots, len(x))
    sample = torch.full((n,), -1, dtype=torch.int64, device=x.device)  # -1: an empty slot
    state: State = {}
    waiting = torch.arange(len(x), device=x.device)

    def refill(free: torch.Tensor) -> None:
        nonlocal waiting
        incoming, waiting = waiting[: len(free)], waiting[len(free) :]
        free = free[: len(incoming)]
        if not len(incoming):
            return
        fresh = {key: value[incoming] for key, value in samples.items()}
        fresh["taken"] = torch.zeros(len(incoming), dtype=torch.int64, device=x.device)
        fresh |= attack.start(fresh, run, generator)
        for key, value in fresh.items():
            if key not in state:
                state[key] = torch.zeros((n, *value.shape[1:]), dtype=value.dtype, device=value.device)
            state[key][free] = value
        sample[free] = incoming

    refill(torch.arange(n, device=x.device))
    while True:
        occupied = sample >= 0
        if not occupied.any():
            return adversarial, first_met, logits_after
        adv, logits = forward(model, state["adv"], attack.uses_gradient)
        if logits_after is None:
            logits_after = torch.zeros((len(x), logits.shape[1]), dtype=torch.float32, device=x.device)
        met = meets_goal(logits.detach(), state["goal"], targeted) & occupied
        index = sample.clamp(min=0)
        first = met & (first_met[index] < 0)
        first_met[index[first]] = state["taken"][first]
        done = occupied & ((met & attack.early_stop) | (state["taken"] == attack.steps))
        if done.any():
            leaving, leaving_logits = attack.returned(state, adv.detach(), logits.detach())
            adversarial[sample[done]] = leaving[done]
            logits_after[sample[done]] = leaving_logits[done].to(logits_after.dtype)
        moving = occupied & ~done
        if moving.any():
            for key, value in attack.step(adv, logits, state, targeted, generator).items():
                state[key] = torch.where(_rows(moving, value), value, state[key])
            state["taken"] = state["taken"] + moving
        free = done.nonzero().flatten()
        sample[free] = -1
        refill(free)
        if on_done is not None:
            on_done(len(free))
        if not len(waiting) and n > 1 and int((sample >= 0).sum()) <= n // 2:
            # the tail: no one waits for a slot, so halve the batch (the samples still running first); halving
            # keeps to a few shapes, which cuDNN tunes once each
            order = torch.argsort((sample < 0).to(torch.int8), stable=True)[: n // 2]
            n, sample = n // 2, sample[order]
            state = {key: value[order] for key, value in state.items()}
