"""The base of every attack: ``@ATTACKS.register(name)`` on an :class:`Attack` subclass adds one, in one file.

A subclass says only what is its own: where it starts (:meth:`Attack.start`), the loss it ascends
(:meth:`Attack.loss`) and its step (:meth:`Attack.step`), on a batch of per-sample state. The shared loop
(:func:`dlapps.attacks.loop.run_in_slots`) does the rest for all of them: fixed-shape batches refilled as samples
finish, per-sample early stop, and the step count at which each sample first met its goal.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from dlapps.attacks.threats import THREATS, Threat
from dlapps.errors import AttackError
from dlapps.registry import Registry

State = dict[str, torch.Tensor]
"""Per-sample tensors, the batch first. The loop provides ``x`` (the input), ``goal`` (the label, or the target
of a targeted attack), ``clean`` (the logits of the input) and ``taken`` (steps taken so far); an attack adds
``adv`` (its current point, the one the loop evaluates next) and whatever else it carries from step to step."""


class Attack:
    """An attack's settings, and the three things that make it this attack and not another.

    ``eps`` is the radius of the ``threat`` ball, in pixel units; ``alpha`` the step size (default:
    :meth:`default_alpha`); ``restarts`` how many runs attack the samples that earlier runs did not break. With
    ``early_stop`` a sample stops as soon as it meets its goal; without it every sample takes every step.
    """

    name: ClassVar[str]  # set by the registry
    summary: ClassVar[str]  # what it does, with its paper, for reports
    threats: ClassVar[tuple[str, ...]] = ("linf", "l2")
    default_steps: ClassVar[int] = 10
    single_step: ClassVar[bool] = False
    random_start: ClassVar[bool] = False  # start from a random point of the ball (else from the input)
    uses_gradient: ClassVar[bool] = True  # False: a score-based attack; the loop then runs without autograd
    uses_clean_logits: ClassVar[bool] = False  # its start reads ``clean``, so adversarial training must compute it
    takes_target: ClassVar[bool] = True  # False: an untargeted attack only; attack() refuses a target
    min_classes: ClassVar[int] = 2  # the fewest classes its loss makes sense for

    def __init__(
        self,
        *,
        eps: float,
        threat: str = "linf",
        steps: int | None = None,
        alpha: float | None = None,
        restarts: int = 1,
        early_stop: bool = True,
    ) -> None:
        THREATS.check(threat)
        if threat not in self.threats:
            raise AttackError(f"{self.name} attacks within {' or '.join(self.threats)}, not {threat}")
        steps = (1 if self.single_step else self.default_steps) if steps is None else steps
        _check_number("eps", eps, upper=1 if threat == "linf" else math.inf)
        check_positive_int("steps", steps)
        if self.single_step and steps != 1:
            raise AttackError(f"{self.name} takes a single step of size eps; use method 'bim' for {steps} steps")
        if alpha is not None:
            _check_number("alpha", alpha, upper=1 if threat == "linf" else math.inf)
        check_positive_int("restarts", restarts)
        self.eps, self.threat_name, self.steps, self.restarts, self.early_stop = (
            eps,
            threat,
            steps,
            restarts,
            early_stop,
        )
        self.alpha = self.default_alpha() if alpha is None else alpha

    @property
    def threat(self) -> type[Threat]:
        return THREATS[self.threat_name]

    def runs(self, classes: int) -> int:
        """How many times the samples not yet broken are attacked again (from a new random start, a new target), on
        a model with ``classes`` outputs."""
        return self.restarts

    def default_alpha(self) -> float:
        """ε in one step; else 2.5 ε / steps (Madry et al.), enough to cross the ball and come back."""
        return self.eps if self.single_step else 2.5 * self.eps / self.steps

    @classmethod
    def sets_own_step(cls) -> bool:
        """Whether it chooses its own step size (one step of ε, an adaptive one, none) rather than a fixed ``alpha``
        a study would give every iterative attack."""
        return cls.single_step or cls.default_alpha is not Attack.default_alpha

    def start(self, state: State, run: int, generator: torch.Generator | None) -> State:
        """Where each sample starts: the input, or a random point of the ball with :attr:`random_start`."""
        x = state["x"]
        return {"adv": self.threat.random_point(x, self.eps, generator) if self.random_start else x}

    def loss(self, logits: torch.Tensor, state: State, targeted: bool) -> torch.Tensor:
        """(N,) what the attack ascends: the cross-entropy of the goal (negated towards a target)."""
        loss = F.cross_entropy(logits.float(), state["goal"], reduction="none")
        return -loss if targeted else loss

    def gradient(self, adv: torch.Tensor, logits: torch.Tensor, state: State, targeted: bool) -> torch.Tensor:
        """The gradient of the batch-mean :meth:`loss` with respect to the input ``adv`` (parameters' ``.grad``
        stay). The mean, as in torchattacks, so that results agree with it bit for bit; no step depends on the
        gradient's overall scale."""
        with torch.enable_grad():
            loss = self.loss(logits, state, targeted).mean()
            if not loss.requires_grad:
                raise AttackError(
                    f"the model's output has no gradient with respect to its input, so {self.name} cannot run; "
                    "a score-based attack (square) can"
                )
            (grad,) = torch.autograd.grad(loss, adv)
        return grad

    def step(
        self, adv: torch.Tensor, logits: torch.Tensor, state: State, targeted: bool, generator: torch.Generator | None
    ) -> State:
        """The next point of every sample (``adv``, with the logits there), and any other state it changes.

        The default is a step of ``alpha`` along the threat's steepest direction of the gradient, projected
        back onto the ball: iterative FGSM.
        """
        grad = self.gradient(adv, logits, state, targeted)
        return {
            "adv": self.threat.project(adv.detach() + self.alpha * self.threat.direction(grad), state["x"], self.eps)
        }

    def returned(self, state: State, adv: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The example (and its logits) a sample leaves with when it stops; by default the point just evaluated."""
        return adv, logits

    def settings(self) -> dict[str, Any]:
        """Every setting, by name, e.g. to name a model trained against this attack."""
        return {name.removesuffix("_name"): value for name, value in vars(self).items()}

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v:.6g}' if isinstance(v, float) else f'{k}={v!r}' for k, v in self.settings().items())})"


def check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise AttackError(f"{name} must be a positive integer, got {value!r}")


def _check_number(name: str, value: object, *, upper: float) -> None:
    unit = "pixel units: images are in [0, 1]" if upper == 1 else "pixel units"
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= upper:  # False for NaN
        raise AttackError(f"{name} must be in [0, {upper:g}] ({unit}), got {value!r}")


def _named(name: str, cls: type[Attack]) -> type[Attack]:
    cls.name = name
    return cls


ATTACKS: Registry[type[Attack]] = Registry("attack", AttackError, entry=_named)


def make_attack(method: str | Attack, **settings: Any) -> Attack:
    """The attack ``method`` (a registered name, or an :class:`Attack` itself) with ``settings``; a setting it
    does not take is one clear error."""
    if isinstance(method, Attack):
        if settings:
            raise AttackError(f"settings ({', '.join(settings)}) go to the {method.name} attack itself, not beside it")
        return method
    cls = ATTACKS[method]
    try:
        return cls(**settings)
    except TypeError as error:
        raise AttackError(f"{method}: {str(error).split(') ', 1)[-1]}") from None
