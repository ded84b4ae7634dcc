"""One entry point for every attack: ``attack(model, x, y, method=..., eps=...) -> AttackResult``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks.base import (
    PIXEL,
    AttackResult,
    TargetSpec,
    check_budget,
    check_inputs,
    check_labels,
    check_logits,
    check_not_probabilities,
    resolve_targets,
)
from dlapps.attacks.iterative import Budget, attack_in_slots, meets_goal
from dlapps.attacks.metrics import clean_accuracy, cumulative_success, robust_accuracy, summarize
from dlapps.data import ImageArrays
from dlapps.errors import AttackError
from dlapps.models.hooks import model_device, model_mode
from dlapps.models.layout import inference_batch
from dlapps.registry import Registry


class Method:
    """A registered attack: how it sets up the common loop (:func:`dlapps.attacks.iterative.attack_in_slots`),
    as class attributes. ``@ATTACKS.register(name)`` on a subclass adds one; attacks and adversarial training
    take any of them by name."""

    summary: ClassVar[str]  # what it does, with its paper, for reports
    random_start: ClassVar[bool] = False  # from a uniform random point of the ε-ball
    momentum: ClassVar[bool] = False  # MI-FGSM's momentum of L1-normalised gradients
    single_step: ClassVar[bool] = False  # one step
    # its step size in units of ε (None: ε in one step, else 2.5 ε / steps)
    alpha_per_eps: ClassVar[float | None] = None

    @classmethod
    def default_alpha(cls, eps: float, steps: int) -> float:
        """ε for one step; else 2.5 ε / steps (Madry et al.), enough to cross the ball and come back."""
        if cls.alpha_per_eps is not None:
            return cls.alpha_per_eps * eps
        return eps if cls.single_step else 2.5 * eps / steps


ATTACKS: Registry[type[Method]] = Registry("attack", AttackError)


@ATTACKS.register("fgsm")
class FGSM(Method):
    summary = "one step of size ε along the gradient's sign (Goodfellow et al. 2015)"
    single_step = True


@ATTACKS.register("fgsm-rs")
class FGSMRandomStart(Method):
    summary = "FGSM from a uniform random point of the ε-ball, a step of 1.25 ε (Wong et al. 2020)"
    single_step, random_start, alpha_per_eps = True, True, 1.25


@ATTACKS.register("bim")
class BIM(Method):
    summary = "iterative FGSM from the input, projected after each step (Kurakin et al. 2017)"


@ATTACKS.register("pgd")
class PGD(Method):
    summary = "iterative FGSM from a uniform random point of the ε-ball (Madry et al. 2018)"
    random_start = True


@ATTACKS.register("mifgsm")
class MIFGSM(Method):
    summary = "iterative FGSM on a momentum of L1-normalised gradients (Dong et al. 2018)"
    momentum = True


def default_alpha(method: str, eps: float, steps: int) -> float:
    """The step size of ``method`` for ``eps`` in ``steps`` steps (:meth:`Method.default_alpha`)."""
    return ATTACKS[method].default_alpha(eps, steps)


def attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "bim",
    eps: float,
    alpha: float | None = None,
    steps: int | None = None,
    decay: float = 1.0,
    target: TargetSpec = None,
    early_stop: bool = True,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    on_done: Callable[[int], None] | None = None,
) -> AttackResult:
    """Attack the images ``x`` (in [0, 1]) with true labels ``y``.

    ``steps`` defaults to 1 for FGSM and 10 otherwise, ``alpha`` to :func:`default_alpha`; ``decay`` is
    MI-FGSM's momentum factor. ``target`` makes the attack targeted (see :func:`resolve_targets`); samples
    whose target is their label are skipped. With ``early_stop`` a sample stops as soon as it meets its
    goal (one that meets it unperturbed is not attacked), so its iteration count is exact and its example
    the first that succeeded; without it every sample takes every step, as in torchattacks. At most
    ``batch_size`` samples (default: as many as run fastest on the device,
    :func:`~dlapps.models.layout.inference_batch`) go through the model at once, in slots that are refilled as
    samples finish. The model runs in eval mode and every submodule gets its own mode back afterwards.
    Random starts and random targets come from ``generator`` (else the global RNG); ``on_done`` is called
    with the number of samples finished, as they finish.
    """
    spec = ATTACKS[method]
    if steps is None:
        steps = 1 if spec.single_step else 10
    if spec.single_step and steps != 1:
        raise AttackError(f"{method} takes a single step of size eps; use method='bim' for {steps} steps")
    check_budget(eps, alpha, steps)
    alpha = default_alpha(method, eps, steps) if alpha is None else alpha
    check_inputs(x, y)
    x = x.detach()
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise AttackError(f"batch_size must be a positive integer, got {batch_size!r}")
    slots = batch_size or inference_batch(x.shape[1:], x.device)
    with model_mode(model, False):
        with torch.no_grad():
            clean = torch.cat([check_logits(model(chunk), len(chunk)) for chunk in x.split(slots)]).float()
        check_not_probabilities(clean)
        check_labels(y, clean.shape[1])
        targets = resolve_targets(target, y, clean, generator)
        targeted = targets is not None
        goal = targets if targeted else y
        skipped = goal == y if targeted else torch.zeros_like(y, dtype=torch.bool)
        met_unperturbed = meets_goal(clean, goal, targeted) & ~skipped
        first_met = torch.where(met_unperturbed, 0, -1)
        queue = (~skipped & ~(met_unperturbed & early_stop)).nonzero().flatten()
        if on_done is not None:
            on_done(len(x) - len(queue))
        adversarial, logits_after = x.clone(), clean.clone()
        if len(queue):
            budget = Budget(
                eps, alpha, steps, targeted, spec.random_start, decay if spec.momentum else None, early_stop
            )
            adversarial[queue], first, logits_after[queue] = attack_in_slots(
                model, x[queue], goal[queue], budget, slots=slots, generator=generator, on_done=on_done
            )
            first_met[queue] = torch.where(first_met[queue] >= 0, first_met[queue], first)
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
    model: nn.Module, data: ImageArrays, *, device: torch.device | str | None = None, **kwargs: Any
) -> AttackResult:
    """:func:`attack` on a whole uint8 split, moved to ``device`` (default: the model's) and scaled to [0, 1].

    The result is on the CPU.
    """
    device = device or model_device(model)
    x = data.images.to(device).float() / 255
    return attack(model, x, data.labels.to(device), **kwargs).to("cpu")


def survives_restarts(
    model: nn.Module,
    data: ImageArrays,
    *,
    eps: float,
    steps: int,
    restarts: int,
    alpha: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """(N,) bool, on the CPU: whether each sample is still classified correctly after every one of ``restarts`` PGD
    runs from random starts; each run attacks only the samples the runs before it did not fool.

    The stronger attack a robustness claim needs against gradient masking: more steps than the usual budget and
    several random starts, counting a sample as robust only if none of them fooled it.
    """
    robust = torch.ones(len(data), dtype=torch.bool)
    for restart in range(restarts):
        left = robust.nonzero().flatten()
        if len(left) == 0:
            break
        result = attack_arrays(
            model, data.take(left), method="pgd", eps=eps, alpha=alpha, steps=steps, batch_size=batch_size,
            generator=torch.Generator().manual_seed(seed + restart),
        )  # fmt: skip
        robust[left] = result.pred_after == result.labels
    return robust


def robustness_at(
    model: nn.Module,
    data: ImageArrays,
    eps_255: float,
    *,
    steps: int,
    strong_steps: int,
    restarts: int,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """L∞ PGD at ε = ``eps_255`` grey levels on ``data`` with per-sample early stop, then, on what survives, PGD with
    ``strong_steps`` steps from ``restarts`` random starts, so that gradient masking cannot flatter: the attack's
    summary, the robust accuracy after both (``robust_accuracy_strong``), the fraction of correctly classified
    images fooled, and the fraction fooled within k steps."""
    eps = eps_255 * PIXEL
    result = attack_arrays(model, data, method="pgd", eps=eps, steps=steps, batch_size=batch_size,
                           generator=torch.Generator().manual_seed(seed))  # fmt: skip
    survived = result.pred_after == result.labels
    if survived.any() and eps > 0:
        strong = survives_restarts(model, data.take(survived.nonzero().flatten()), eps=eps, steps=strong_steps,
                                   restarts=restarts, batch_size=batch_size, seed=seed + 1)  # fmt: skip
        survived[survived.clone()] = strong
    summary = summarize(result)
    robust = survived.double().mean().item()
    return {"eps_255": eps_255, **summary, "robust_accuracy_strong": robust,
            "fooled": 1 - robust / max(summary["clean_accuracy"], 1e-12),
            "cumulative_success": cumulative_success(result, steps)}  # fmt: skip


def fgsm_and_pgd_accuracy(
    model: nn.Module, data: ImageArrays, *, eps: float, alpha: float, pgd_steps: tuple[int, ...], batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Clean accuracy, and robust accuracy under FGSM (every image one step) and under PGD of each ``pgd_steps``
    from a random start; PGD stops an image once it is misclassified, so it counts as robust only if no step
    fooled it."""
    fgsm = attack_arrays(model, data, method="fgsm", eps=eps, batch_size=batch_size, early_stop=False)
    found = {"clean accuracy": clean_accuracy(fgsm), "FGSM accuracy": robust_accuracy(fgsm)}
    for steps in pgd_steps:
        pgd = attack_arrays(model, data, method="pgd", eps=eps, alpha=alpha, steps=steps, batch_size=batch_size,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip
        found[f"PGD-{steps} accuracy"] = robust_accuracy(pgd)
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
