"""Adversarial training as a ``step_loss`` for :func:`dlapps.train.fit`.

The loss is ``w_clean · CE(clean batch) + w_adv · CE(adversarial batch)``, the adversarial batch made on
the fly by FGSM, by FGSM from a random start ("fgsm-rs", Wong et al. 2020, "Fast is better than free") or
by PGD. ``fit`` keeps the model in train mode, and the adversarial batch is made in that mode, as Wong et
al. do: the attack sees the BatchNorm batch statistics the update will use, and its forward passes also
move the running statistics, like the training forward passes on perturbed batches that follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks.base import check_budget, check_inputs
from dlapps.attacks.iterative import perturb
from dlapps.errors import AttackError

TrainingAttack = Literal["fgsm", "fgsm-rs", "pgd"]
_ALPHA_PER_EPS = {"fgsm": 1.0, "fgsm-rs": 1.25}  # Wong et al.'s step for FGSM from a random start


@dataclass(frozen=True)
class AdversarialStepLoss:
    """``step_loss(model, inputs, labels) -> (loss, adversarial logits)``: train accuracy is robust accuracy.

    ``alpha`` defaults to ε (fgsm), 1.25 ε (fgsm-rs) or 2.5 ε / steps (pgd); FGSM variants take one step.
    :attr:`objective` names every setting, for a :class:`~dlapps.train.ClassifierRecipe`.
    """

    method: TrainingAttack
    eps: float
    alpha: float | None = None
    steps: int = 1
    w_clean: float = 0.5
    w_adv: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in ("fgsm", "fgsm-rs", "pgd"):
            raise AttackError(f"adversarial training method must be fgsm, fgsm-rs or pgd, got {self.method!r}")
        check_budget(self.eps, self.alpha, self.steps)
        if self.method != "pgd" and self.steps != 1:
            raise AttackError(f"{self.method} takes a single step; use method 'pgd' for {self.steps} steps")
        if not (self.w_clean >= 0 and self.w_adv > 0):
            raise AttackError(f"weights must be w_clean >= 0 and w_adv > 0, got {self.w_clean} and {self.w_adv}")

    @property
    def step_size(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return self.eps * _ALPHA_PER_EPS[self.method] if self.method in _ALPHA_PER_EPS else 2.5 * self.eps / self.steps

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
        adversarial = perturb(
            model,
            inputs,
            labels,
            eps=self.eps,
            alpha=self.step_size,
            steps=self.steps,
            random_start=self.method != "fgsm",
        )
        adversarial_logits = model(adversarial)
        loss = self.w_adv * F.cross_entropy(adversarial_logits.float(), labels)
        if self.w_clean > 0:
            loss = loss + self.w_clean * F.cross_entropy(model(inputs).float(), labels)
        return loss, adversarial_logits
