"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks"): PGD with momentum whose step size adapts to the progress of each sample, the gradient attacks of AutoAttack.

From a random point ``x_0`` on the sphere of radius ε (∩ [0, 1]), with the step size ``η`` starting at 2ε (the
setting ``alpha``), ``P`` the projection onto the ball and ``dir`` the threat's steepest direction (sign for L∞,
the normalised gradient for L2)::

    z_{k+1} = P(x_k + η · dir(∇f(x_k)))
    x_{k+1} = P(x_k + α (z_{k+1} - x_k) + (1 - α)(x_k - x_{k-1})),    α = 0.75 (α = 1 for the first step)

At the checkpoints ``w_j ≈ p_j N`` of ``N`` steps, ``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (in whole steps, as the reference implementation counts them:
intervals of ``⌊0.22 N⌋`` steps, each next one ``⌊0.03 N⌋`` shorter, but not below ``⌊0.06 N⌋``; for N = 100 the
checkpoints are 22, 41, 57, 70, 80, 87, 93 and 99), ``η`` is halved and the next step starts from the best point
so far, ``x_max`` (with its gradient), if

1. at most a fraction ``ρ = 0.75`` of the steps since the last checkpoint increased the loss (the paper writes
   "fewer than"; the reference implementation, and this one, "at most"), or
2. ``η`` was not halved at the last checkpoint and the best loss has not increased since.

Every sample keeps its own ``η``, best point and checkpoint record: checkpoints count each sample's own steps,
so a batch whose slots are refilled as samples finish holds samples at different checkpoints.

- ``apgd-ce`` ascends the cross-entropy of the label.
- ``apgd-dlr`` ascends the Difference of Logits Ratio, ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3)`` (``z_πi`` the
  i-th largest logit), which is invariant to shifting and rescaling the logits.
- ``apgd-t`` ascends the targeted DLR, ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)``, towards each of the
  ``n_target_classes`` classes the clean input scores highest after its label, one run per target class (and per
  restart, the restarts of one target first, as in the reference), each on the samples no run before broke.
  Success is still misclassification: the targets only steer the search.

All three are untargeted: :func:`~dlapps.attacks.attack` refuses a ``target``. An example is the first point at
which the sample is misclassified (also without early stop); a sample never fooled leaves with its last point.
"""

from __future__ import annotations

from functools import cache

import torch

from dlapps.attacks.attack import ATTACKS, Attack, State, check_positive_int
from dlapps.attacks.base import uniform_noise
from dlapps.errors import AttackError

MOMENTUM = 0.75  # α: the weight of the new step against the last one (the paper fixes it)


@cache
def checkpoint_intervals(steps: int) -> tuple[int, ...]:
    """For each step count 0..``steps``, the length of the interval that ends there if it is a checkpoint, else 0.

    The first interval is 22% of the steps, each next one 3% shorter, but not below 6% (whole steps, at least 1).
    """
    length, shortening, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    intervals, at = [0] * (steps + 1), length
    while at <= steps:
        intervals[at] = length
        length = max(length - shortening, shortest)
        at += length
    return tuple(intervals)


def _rows(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) values shaped to broadcast against the (N, ...) tensor ``like``."""
    return values.view(-1, *[1] * (like.ndim - 1))


def dlr_denominator(logits: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``z_π1 - z_π3`` (untargeted DLR) or ``z_π1 - (z_π3 + z_π4) / 2`` (targeted), plus 1e-12."""
    ranked = logits.sort(1, descending=True).values
    low = (ranked[:, 2] + ranked[:, 3]) / 2 if targeted else ranked[:, 2]
    return ranked[:, 0] - low + 1e-12


@ATTACKS.register("apgd-ce")
class APGD(Attack):
    summary = "momentum PGD whose per-sample step size halves at checkpoints, on the cross-entropy (Croce & Hein 2020)"
    default_steps = 100
    random_start = True
    uses_clean_logits = True  # its start sizes the logits it keeps by the clean ones
    takes_target = False

    def __init__(self, *, rho: float = 0.75, **settings) -> None:
        super().__init__(**settings)
        if not isinstance(rho, int | float) or isinstance(rho, bool) or not 0 <= rho <= 1:
            raise AttackError(f"rho must be in [0, 1], got {rho!r}")
        self.rho = rho

    def default_alpha(self) -> float:
        """The initial step size η: 2ε, enough to cross the ball."""
        return 2 * self.eps

    def start(self, state: State, run: int, generator: torch.Generator | None) -> State:
        """A random point on the sphere of radius ε (uniform noise scaled to it for L∞, Gaussian for L2), and
        fresh step size, best point and checkpoint record."""
        x, clean = state["x"], state["clean"]
        if self.threat_name == "linf":
            noise = uniform_noise(x, 1.0, generator)
        else:
            device = generator.device if generator is not None else x.device
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        norm = self.threat.distance(noise, torch.zeros_like(noise))
        adv = (x + self.eps * noise / _rows(norm + 1e-12, noise)).clamp(0, 1)
        n, nowhere = len(x), torch.full((len(x),), -torch.inf, device=x.device)
        return {
            "adv": adv,
            "eta": torch.full((n,), float(self.alpha), device=x.device),  # the step size η
            "previous": adv,  # the point the last step started from: x_{k-1}, or x_max after a restart
            "best": adv,  # x_max, its gradient and its loss
            "best_gradient": torch.zeros_like(x),
            "best_loss": nowhere,
            "last_loss": nowhere,  # the loss at the point evaluated before this one
            "increases": torch.zeros(n, dtype=torch.int64, device=x.device),  # since the last checkpoint
            "checked_loss": nowhere,  # the best loss at the last checkpoint
            "halved": torch.ones(n, dtype=torch.bool, device=x.device),  # η was halved at the last checkpoint
            "found": adv,  # the first misclassified point, its logits, and whether there is one
            "found_logits": torch.zeros_like(clean),
            "fooled": torch.zeros(n, dtype=torch.bool, device=x.device),
        }

    def step(
        self, adv: torch.Tensor, logits: torch.Tensor, state: State, targeted: bool, generator: torch.Generator | None
    ) -> State:
        with torch.enable_grad():
            loss = self.loss(logits, state, targeted)
            (grad,) = torch.autograd.grad(loss.sum(), adv)  # the sum, as the reference; no step depends on scale
        adv, loss, logits = adv.detach(), loss.detach(), logits.detach()
        taken = state["taken"]
        first = taken == 0

        # x_max: the point of highest loss so far (the start's at step 0)
        better = first | (loss > state["best_loss"])
        best = torch.where(_rows(better, adv), adv, state["best"])
        best_gradient = torch.where(_rows(better, grad), grad, state["best_gradient"])
        best_loss = torch.where(better, loss, state["best_loss"])
        increases = state["increases"] + (~first & (loss > state["last_loss"]))
        checked_loss = torch.where(first, loss, state["checked_loss"])

        # at a checkpoint: halve η and restart from x_max where the loss oscillated or the best stalled
        interval = torch.tensor(checkpoint_intervals(self.steps), device=taken.device)[taken]
        at_checkpoint = interval > 0
        oscillated = increases <= self.rho * interval
        stalled = ~state["halved"] & (checked_loss >= best_loss)
        halve = at_checkpoint & (oscillated | stalled)
        eta = torch.where(halve, state["eta"] / 2, state["eta"])
        point = torch.where(_rows(halve, adv), best, adv)
        grad = torch.where(_rows(halve, grad), best_gradient, grad)

        # the step: z, then a momentum combination with the last step (none on the first)
        project = self.threat.project
        z = project(point + _rows(eta, point) * self.threat.direction(grad), state["x"], self.eps)
        weight = _rows(torch.where(first, 1.0, MOMENTUM), point)
        following = project(
            point + weight * (z - point) + (1 - weight) * (point - state["previous"]), state["x"], self.eps
        )

        fooled_now = logits.argmax(1) != state["goal"]
        first_fooled = fooled_now & ~state["fooled"]
        return {
            "adv": following,
            "eta": eta,
            "previous": point,
            "best": best,
            "best_gradient": best_gradient,
            "best_loss": best_loss,
            "last_loss": loss,
            "increases": torch.where(at_checkpoint, 0, increases),
            "checked_loss": torch.where(at_checkpoint, best_loss, checked_loss),
            "halved": torch.where(at_checkpoint, halve, state["halved"]),
            "found": torch.where(_rows(first_fooled, adv), adv, state["found"]),
            "found_logits": torch.where(
                _rows(first_fooled, logits), logits.to(state["found_logits"].dtype), state["found_logits"]
            ),
            "fooled": state["fooled"] | fooled_now,
        }

    def returned(self, state: State, adv: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first misclassified point (the one just evaluated, if none was before), else the last one."""
        fooled = state["fooled"]
        return (
            torch.where(_rows(fooled, adv), state["found"], adv),
            torch.where(_rows(fooled, logits), state["found_logits"].to(logits.dtype), logits),
        )


@ATTACKS.register("apgd-dlr")
class APGDDLR(APGD):
    summary = "APGD on the Difference of Logits Ratio, invariant to the logits' shift and scale (Croce & Hein 2020)"
    min_classes = 3

    def loss(self, logits: torch.Tensor, state: State, targeted: bool) -> torch.Tensor:
        logits, label = logits.float(), state["goal"]
        true = logits.gather(1, label[:, None]).squeeze(1)
        other = logits.scatter(1, label[:, None], -torch.inf).amax(1)
        return -(true - other) / dlr_denominator(logits, targeted=False)


@ATTACKS.register("apgd-t")
class APGDT(APGD):
    summary = (
        "APGD on the targeted DLR towards each of the classes scored highest after the label in turn, "
        "untargeted success (Croce & Hein 2020)"
    )
    min_classes = 4

    def __init__(self, *, n_target_classes: int = 9, **settings) -> None:
        super().__init__(**settings)
        check_positive_int("n_target_classes", n_target_classes)
        self.n_target_classes = n_target_classes

    def runs(self, classes: int) -> int:
        """Every restart of every target class (at most the classes other than the label)."""
        return min(self.n_target_classes, classes - 1) * self.restarts

    def start(self, state: State, run: int, generator: torch.Generator | None) -> State:
        """:meth:`APGD.start`, and the target of this run: the class the clean input scores ``run // restarts + 1``
        -th highest among the classes other than its label."""
        clean, label = state["clean"], state["goal"]
        started = super().start(state, run, generator)
        ranked = clean.float().scatter(1, label[:, None], torch.inf).argsort(1, descending=True)
        return started | {"target": ranked[:, 1 + run // self.restarts]}

    def loss(self, logits: torch.Tensor, state: State, targeted: bool) -> torch.Tensor:
        logits = logits.float()
        true = logits.gather(1, state["goal"][:, None]).squeeze(1)
        target = logits.gather(1, state["target"][:, None]).squeeze(1)
        return -(true - target) / dlr_denominator(logits, targeted=True)
