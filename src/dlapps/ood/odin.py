"""ODIN: temperature scaling plus a small input perturbation that raises the predicted class's softmax.

Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in Neural Networks",
ICLR 2018::

    x~ = x - eps * sign(-grad_x log S_yhat(x; T))     (yhat = argmax_c f_c(x))
    S(x) = max_c softmax(f(x~) / T)_c

The perturbation helps ID inputs more than OOD ones. ``eps`` is in pixel units of the [0, 1] input: the
paper's code steps the normalised input by ``eps / std``, which is ``eps`` in pixels. Like the paper,
``x~`` is not clipped to [0, 1]. Defaults ``T = 1000, eps = 0.0014`` are the paper's CIFAR settings (also
OpenOOD's); the paper tunes them on OOD validation data, which is not done here. ``T = 1, eps = 0`` is MSP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.models.hooks import model_device
from dlapps.ood.base import DETECTORS, Detector
from dlapps.ood.msp import max_softmax


def odin_perturb(model: nn.Module, x: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
    """``x`` moved by ``epsilon`` against the gradient of ``-log S_yhat(x; T)``; parameters get no ``.grad``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x) / temperature
        loss = F.cross_entropy(logits, logits.argmax(dim=1), reduction="sum")  # sum of -log S_yhat per image
        (grad,) = torch.autograd.grad(loss, x)
    return x.detach() - epsilon * grad.sign()


@DETECTORS.register("odin")
class ODIN(Detector):
    name = "ODIN"
    cost = "slow"

    def __init__(self, temperature: float = 1000.0, epsilon: float = 0.0014) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.temperature, self.epsilon = temperature, epsilon

    def score(self, x: torch.Tensor) -> torch.Tensor:
        model, _ = self.bound()
        x = x.to(model_device(model))
        if self.epsilon > 0:
            x = odin_perturb(model, x, self.temperature, self.epsilon)
        with torch.no_grad():
            return max_softmax(model(x), self.temperature)
