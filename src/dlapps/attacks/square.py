"""The Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial attack
via random search"), L∞: a random search that reads only the model's scores, never its gradient.

It starts from vertical stripes, every column of every channel at ±ε: ``x̂ = clip(x + ε·σ)`` with one sign
``σ ∈ {-1, 1}`` per channel and column. Each query then changes one random square window of side
``s = max(round(√(p·H·W)), 1)`` (at most the image's side) to new values ``clip(x + ε·ρ_c)``, one random sign
``ρ_c`` per channel; the proposal is kept when it raises the loss, else the search stays where it was. The
fraction ``p`` of pixels changed halves along a fixed schedule, ``p_init`` until 0.1% of the budget, then
``p_init / 2`` up to 0.5%, ``/ 4`` up to 2%, ``/ 8`` up to 5%, ``/ 16`` up to 10%, ``/ 32`` up to 20%, ``/ 64``
up to 40%, ``/ 128`` up to 60%, ``/ 256`` up to 80% and ``/ 512`` after: the schedule the paper gives for 10,000
queries, rescaled to the budget as in the authors' code. Windows lie anywhere in the image, one position per
sample and query (the paper's ``r, s ∈ {0, …, w − h}``); as in the authors' code, a proposal that would leave the
window unchanged is redrawn. (torchattacks' Square draws one window and one set of signs per query for the whole
batch, from positions that never reach the last row and column; its robust accuracies agree with these.)

The loss is the margin ``max_{j≠y} z_j − z_y`` untargeted and ``log softmax(z)_t`` (the negative cross-entropy
of the target) targeted, as in the authors' code; a proposal that meets the goal while the best point does not is
kept too. Each iteration of the loop is one query: ``steps`` queries after the first one at the stripes, so a
sample that is never fooled is evaluated ``steps + 1`` times, as by torchattacks' and AutoAttack's ``n_queries``.
The default budget is AutoAttack's 5,000. L∞ only.

Because it never differentiates the model, a model that hides its gradient (rounding its input, a
non-differentiable preprocessing, saturated softmax) does not hide its weakness from it: where PGD fails and
Square succeeds, the robustness PGD measured was gradient masking.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlapps.attacks.attack import ATTACKS, Attack, State
from dlapps.attacks.loop import meets_goal
from dlapps.errors import AttackError

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # per 10,000 queries: p halves after each
REDRAWS = 16  # a window left unchanged is redrawn up to this many times (with c channels, 2^-c of draws are)


@ATTACKS.register("square")
class Square(Attack):
    summary = "score-based random search over square windows at the corners of the ε-ball (Andriushchenko et al. 2020)"
    threats = ("linf",)
    default_steps = 5000
    uses_gradient = False
    uses_clean_logits = True  # the best point's logits start as the clean ones (their shape)

    def __init__(self, *, p_init: float = 0.8, **settings) -> None:
        super().__init__(**settings)
        if not isinstance(p_init, int | float) or isinstance(p_init, bool) or not 0 < p_init <= 1:
            raise AttackError(
                f"p_init must be in (0, 1] (the fraction of pixels the first windows change), got {p_init!r}"
            )
        self.p_init = p_init

    def default_alpha(self) -> float:
        """No step size: every value it tries is the input's ±ε, and ``p_init`` sets the windows. An ``alpha``
        given (as studies give every iterative attack) is kept in the settings and not used."""
        return self.eps

    def start(self, state: State, run: int, generator: torch.Generator | None) -> State:
        x = state["x"]
        if x.ndim != 4:
            raise AttackError(f"square attacks images of shape (N, C, H, W), got inputs of shape {tuple(x.shape)}")
        n, c, _, w = x.shape
        stripes = (x + self.eps * _signs((n, c, 1, w), generator, x)).clamp(0, 1)
        return {
            "adv": stripes,
            "best": stripes,
            "best_loss": torch.full((n,), -math.inf, device=x.device),
            "best_met": torch.zeros(n, dtype=torch.bool, device=x.device),
            "best_logits": state["clean"].float(),
            "targeted": torch.zeros(n, dtype=torch.bool, device=x.device),  # step's flag, for returned
        }

    def loss(self, logits: torch.Tensor, state: State, targeted: bool) -> torch.Tensor:
        logits, goal = logits.float(), state["goal"]
        if targeted:
            return -F.cross_entropy(logits, goal, reduction="none")
        others = logits.scatter(1, goal[:, None], -math.inf).amax(1)
        return others - logits.gather(1, goal[:, None]).squeeze(1)

    def step(
        self, adv: torch.Tensor, logits: torch.Tensor, state: State, targeted: bool, generator: torch.Generator | None
    ) -> State:
        logits = logits.detach().float()
        loss, met = self.loss(logits, state, targeted), meets_goal(logits, state["goal"], targeted)
        kept = _better(met, loss, state)
        best = torch.where(kept.view(-1, 1, 1, 1), adv.detach(), state["best"])
        return {
            "adv": self.propose(best, state, generator),
            "best": best,
            "best_loss": torch.where(kept, loss, state["best_loss"]),
            "best_met": torch.where(kept, met, state["best_met"]),
            "best_logits": torch.where(kept[:, None], logits, state["best_logits"]),
            "targeted": torch.full_like(met, targeted),
        }

    def returned(self, state: State, adv: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The better of the best point and the proposal just evaluated (whose step has not judged it)."""
        logits, targeted = logits.float(), state["targeted"]
        loss = torch.where(targeted, self.loss(logits, state, True), self.loss(logits, state, False))
        met = torch.where(targeted, logits.argmax(1) == state["goal"], logits.argmax(1) != state["goal"])
        proposal = _better(met, loss, state) | (state["taken"] == 0)  # before the first step: the only point
        return (
            torch.where(proposal.view(-1, 1, 1, 1), adv, state["best"]),
            torch.where(proposal[:, None], logits, state["best_logits"]),
        )

    def window_side(self, taken: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N,) the side of the window each sample changes at its query ``taken`` (0: the first after the start)."""
        sides = [
            min(max(round(math.sqrt(self.p_init / 2**halvings * height * width)), 1), height, width)
            for halvings in range(len(SCHEDULE) + 1)
        ]
        progress = taken * 10_000 // self.steps
        halvings = (progress[:, None] > torch.tensor(SCHEDULE, device=taken.device)).sum(1)
        return torch.tensor(sides, device=taken.device)[halvings]

    def propose(self, best: torch.Tensor, state: State, generator: torch.Generator | None) -> torch.Tensor:
        """The next point of every sample: ``best`` with one random window set to new values at ±ε."""
        x = state["x"]
        n, c, h, w = x.shape
        side = self.window_side(state["taken"], h, w)
        corner = (_uniform((2, n), generator, x) * torch.stack([h - side + 1, w - side + 1])).long()
        corner = torch.minimum(corner, torch.stack([h - side, w - side]))
        rows = torch.arange(h, device=x.device) - corner[0][:, None]
        columns = torch.arange(w, device=x.device) - corner[1][:, None]
        inside = ((rows >= 0) & (rows < side[:, None]))[:, None, :, None] & (
            (columns >= 0) & (columns < side[:, None])
        )[:, None, None, :]
        proposal = torch.where(inside, (x + self.eps * _signs((n, c, 1, 1), generator, x)).clamp(0, 1), best)
        for _ in range(REDRAWS if self.eps > 0 else 0):
            same = (proposal == best).flatten(1).all(1)
            if not same.any():
                break
            redrawn = (x + self.eps * _signs((n, c, 1, 1), generator, x)).clamp(0, 1)
            proposal = torch.where(inside & same.view(-1, 1, 1, 1), redrawn, proposal)
        return proposal


def _better(met: torch.Tensor, loss: torch.Tensor, state: State) -> torch.Tensor:
    """Whether (meets the goal, loss) beats the best point's: meeting the goal first, then a higher loss."""
    return (met & ~state["best_met"]) | ((met == state["best_met"]) & (loss > state["best_loss"]))


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Uniform in [0, 1), from ``generator`` (on its device) else the global RNG, on ``like``'s device."""
    if generator is None:
        return torch.rand(shape, device=like.device)
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device)


def _signs(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Random ±1 of ``shape``, in ``like``'s dtype and device."""
    return torch.where(_uniform(shape, generator, like) < 0.5, -1.0, 1.0).to(like.dtype)
