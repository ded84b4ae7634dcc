"""One entry point for every attack: ``attack(model, x, y, method=..., eps=...) -> AttackResult``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks.attack import Attack, check_positive_int, make_attack
from dlapps.attacks.base import (
    AttackResult,
    TargetSpec,
    check_inputs,
    check_labels,
    check_logits,
    check_not_probabilities,
    resolve_targets,
)
from dlapps.attacks.loop import meets_goal, run_in_slots
from dlapps.attacks.metrics import clean_accuracy, robust_accuracy, summarize
from dlapps.data import ImageArrays
from dlapps.errors import AttackError
from dlapps.models.hooks import model_device, model_mode
from dlapps.models.layout import inference_batch


def attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str | Attack = "bim",
    *,
    target: TargetSpec = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    on_done: Callable[[int], None] | None = None,
    **settings: Any,
) -> AttackResult:
    """Attack the images ``x`` (in [0, 1]) with true labels ``y``.

    ``method`` is a registered attack's name, made with ``settings`` (``eps``, ``threat``, ``steps``, ``alpha``,
    ``restarts``, ``early_stop`` and its own, see :class:`~dlapps.attacks.attack.Attack`), or an attack already
    made. ``target`` makes the attack targeted (see :func:`resolve_targets`); samples whose target is their label
    are skipped. With early stop a sample stops as soon as it meets its goal (one that meets it unperturbed is not
    attacked), so its iteration count is exact and its example the first that succeeded; without it every sample
    takes every step, as in torchattacks. Each restart attacks the samples no run before it broke; a sample's
    iterations count the steps of every run it took. At most ``batch_size`` samples (default: as many as run
    fastest on the device, :func:`~dlapps.models.layout.inference_batch`) go through the model at once, in slots
    that are refilled as samples finish. The model runs in eval mode and every submodule gets its own mode back
    afterwards. Random starts and random targets come from ``generator`` (else the global RNG); ``on_done`` is
    called with the number of samples finished, as they finish.
    """
    spec = make_attack(method, **settings)
    if target is not None and not spec.takes_target:
        raise AttackError(f"{spec.name} takes no target: it is untargeted ({spec.summary})")
    check_inputs(x, y)
    x = x.detach()
    if spec.threat_name == "l2" and spec.eps > (diameter := math.sqrt(x[0].numel())):
        raise AttackError(f"eps={spec.eps:g} exceeds {diameter:.4g}, the L2 diameter of the [0, 1] box of these inputs")
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    slots = batch_size or inference_batch(x.shape[1:], x.device)
    with model_mode(model, False):
        with torch.no_grad():
            clean = torch.cat([check_logits(model(chunk), len(chunk)) for chunk in x.split(slots)]).float()
        check_not_probabilities(clean)
        check_labels(y, clean.shape[1])
        if clean.shape[1] < spec.min_classes:
            raise AttackError(f"{spec.name} needs at least {spec.min_classes} classes; the model has {clean.shape[1]}")
        targets = resolve_targets(target, y, clean, generator)
        targeted = targets is not None
        goal = targets if targeted else y
        skipped = goal == y if targeted else torch.zeros_like(y, dtype=torch.bool)
        met_unperturbed = meets_goal(clean, goal, targeted) & ~skipped
        first_met = torch.where(met_unperturbed, 0, -1)
        queue = (~skipped & ~(met_unperturbed & spec.early_stop)).nonzero().flatten()
        if on_done is not None:
            on_done(len(x) - len(queue))
        adversarial, logits_after = x.clone(), clean.clone()
        samples = {"x": x, "goal": goal, "clean": clean}
        runs = spec.runs(clean.shape[1])
        for run in range(runs):
            if not len(queue):
                break
            last = run == runs - 1
            adversarial[queue], first, logits_after[queue] = run_in_slots(
                model, spec, {key: value[queue] for key, value in samples.items()}, targeted=targeted, run=run,
                slots=slots, generator=generator, on_done=on_done if last else None,
            )  # fmt: skip
            first_met[queue] = torch.where(
                (first_met[queue] >= 0) | (first < 0), first_met[queue], first + run * spec.steps
            )
            broken = meets_goal(logits_after[queue], goal[queue], targeted)
            if on_done is not None and not last:
                on_done(int(broken.sum()))
            queue = queue[~broken]
    success = meets_goal(logits_after, goal, targeted) & ~skipped
    return AttackResult(
        adversarial=adversarial,
        labels=y,
        targets=targets,
        success=success,
        iterations=torch.where(success, first_met, -1),
        prob_before=_true_class_probability(clean, y),
        prob_after=_true_class_probability(logits_after, y),
        pred_before=clean.argmax(1),
        pred_after=logits_after.argmax(1),
        skipped=skipped,
    )


def _true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)


def attack_arrays(
    model: nn.Module, data: ImageArrays, *args: Any, device: torch.device | str | None = None, **kwargs: Any
) -> AttackResult:
    """:func:`attack` on a whole uint8 split, moved to ``device`` (default: the model's) and scaled to [0, 1].

    The result is on the CPU.
    """
    device = device or model_device(model)
    x = data.images.to(device).float() / 255
    return attack(model, x, data.labels.to(device), *args, **kwargs).to("cpu")


def robust_accuracies(
    model: nn.Module, data: ImageArrays, attacks: dict[str, Attack], *, batch_size: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Clean accuracy, and the robust accuracy under each of ``attacks`` (label -> attack), each on every image:
    one stopped by early stop at its first misclassification counts as robust only if no step fooled it."""
    found: dict[str, float] = {}
    for label, each in attacks.items():
        result = attack_arrays(model, data, each, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
        found.setdefault("clean accuracy", clean_accuracy(result))
        found[f"{label} accuracy"] = robust_accuracy(result)
    return found


TARGETING_METRICS = {"success_rate": "success rate", "mean_iterations": "mean iterations to success",
                     "mean_confidence_drop": "mean confidence drop"}  # fmt: skip


def targeted_against_untargeted(
    model: nn.Module, data: ImageArrays, *, eps: float, alpha: float, steps: int, batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Untargeted and targeted (a random other class) iterative FGSM at the same ε, step and budget, with
    per-sample early stop: each one's success rate, mean iterations to success and mean confidence drop."""
    found: dict[str, float] = {}
    for mode, target in (("untargeted", None), ("targeted", "random")):
        result = attack_arrays(model, data, method="bim", eps=eps, alpha=alpha, steps=steps, target=target,
                               batch_size=batch_size, generator=torch.Generator().manual_seed(seed))  # fmt: skip
        summary = summarize(result)
        found |= {f"{mode} {label}": summary[key] for key, label in TARGETING_METRICS.items()}
    return found
