"""MI-FGSM (Dong et al. 2018, "Boosting adversarial attacks with momentum"): iterative FGSM along a momentum
``g ← decay · g + ∇ / mean|∇|`` of L1-normalised gradients, which steadies the direction from step to step."""

from __future__ import annotations

import torch

from dlapps.attacks.attack import ATTACKS, Attack, State


@ATTACKS.register("mifgsm")
class MIFGSM(Attack):
    summary = "iterative FGSM on a momentum of L1-normalised gradients (Dong et al. 2018)"

    def __init__(self, *, decay: float = 1.0, **settings) -> None:
        super().__init__(**settings)
        self.decay = decay

    def start(self, state: State, run: int, generator: torch.Generator | None) -> State:
        return super().start(state, run, generator) | {"momentum": torch.zeros_like(state["x"])}

    def step(
        self, adv: torch.Tensor, logits: torch.Tensor, state: State, targeted: bool, generator: torch.Generator | None
    ) -> State:
        grad = self.gradient(adv, logits, state, targeted)
        scale = grad.abs().mean(tuple(range(1, grad.ndim)), keepdim=True)
        momentum = grad / scale.clamp_min(torch.finfo(grad.dtype).tiny) + self.decay * state["momentum"]
        stepped = adv.detach() + self.alpha * self.threat.direction(momentum)
        return {"adv": self.threat.project(stepped, state["x"], self.eps), "momentum": momentum}
