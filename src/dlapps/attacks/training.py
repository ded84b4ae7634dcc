"""Adversarial training as a ``step_loss`` for :func:`dlapps.train.fit`.

The loss is ``w_clean · CE(clean batch) + w_adv · CE(adversarial batch)``, the adversarial batch made on
the fly by FGSM, by FGSM from a random start ("fgsm-rs", Wong et al. 2020, "Fast is better than free") or
by PGD. ``fit`` keeps the model in train mode, and the adversarial batch is made in that mode, as Wong et
al. do: the attack sees the BatchNorm batch statistics the update will use, and its forward passes also
move the running statistics, like the training forward passes on perturbed batches that follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks.attack import Attack, make_attack
from dlapps.attacks.base import check_inputs
from dlapps.attacks.loop import perturb
from dlapps.errors import AttackError


@dataclass(frozen=True)
class AdversarialStepLoss:
    """``step_loss(model, inputs, labels) -> (loss, adversarial logits)``: train accuracy is robust accuracy.

    ``method`` is any registered attack (:data:`~dlapps.attacks.ATTACKS`), L∞; ``alpha`` defaults to its own step
    (ε for fgsm, 1.25 ε for fgsm-rs, 2.5 ε / steps for the iterative ones); single-step attacks take one step.
    :attr:`objective` names every setting, for a :class:`~dlapps.train.ClassifierRecipe`.
    """

    method: str
    eps: float
    alpha: float | None = None
    steps: int = 1
    w_clean: float = 0.5
    w_adv: float = 0.5

    def __post_init__(self) -> None:
        if not self.attack.uses_gradient:  # making it checks its settings
            raise AttackError(
                f"{self.method} uses no gradient; adversarial training needs a gradient attack (e.g. pgd)"
            )
        if not (self.w_clean >= 0 and self.w_adv > 0):
            raise AttackError(f"weights must be w_clean >= 0 and w_adv > 0, got {self.w_clean} and {self.w_adv}")

    @property
    def attack(self) -> Attack:
        return make_attack(self.method, eps=self.eps, alpha=self.alpha, steps=self.steps, early_stop=False)

    @property
    def step_size(self) -> float:
        return self.attack.alpha

    @property
    def objective(self) -> str:
        return (
            f"adversarial {self.method} eps={self.eps:.6g} alpha={self.step_size:.6g} steps={self.steps} "
            f"loss={self.w_clean:g}*CE(clean)+{self.w_adv:g}*CE(adv)"
        )

    def __call__(
        self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_inputs(inputs, labels)
        adversarial = perturb(model, inputs, labels, self.attack)
        adversarial_logits = model(adversarial)
        loss = self.w_adv * F.cross_entropy(adversarial_logits.float(), labels)
        if self.w_clean > 0:
            loss = loss + self.w_clean * F.cross_entropy(model(inputs).float(), labels)
        return loss, adversarial_logits
