"""Threat models: the set an adversarial example may lie in, and the steepest-ascent step inside it.

Every iterative attack takes ``threat="linf"`` or ``"l2"``: the ε-ball of that norm around the input, cut by the
[0, 1] box of valid images. ε is in pixel units either way (8/255 is the usual L∞ budget on 32-px images, 0.5 the
usual L2 one).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from dlapps.attacks.base import uniform_noise
from dlapps.errors import AttackError
from dlapps.registry import Registry

TINY = 1e-12  # keeps a norm of zero from dividing


class Threat:
    """A norm ball around each input, intersected with the [0, 1] box."""

    summary: ClassVar[str]

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        """The unit step (in this norm) that increases a linear function with gradient ``grad`` most."""
        raise NotImplementedError

    @staticmethod
    def project(point: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        """The point of the ball of radius ``eps`` around ``x`` (∩ [0, 1]) nearest to ``point``, per sample."""
        raise NotImplementedError

    @staticmethod
    def random_point(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """A random point of the ball around ``x`` (∩ [0, 1]): where random-start attacks begin."""
        raise NotImplementedError

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,) distances in this norm."""
        raise NotImplementedError


THREATS: Registry[type[Threat]] = Registry("threat model", AttackError)


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """(N, 1, ..., 1) L2 norms, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.ndim - 1))


@THREATS.register("linf")
class LInf(Threat):
    summary = "L∞: every pixel moves by at most ε"

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    @staticmethod
    def project(point: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        return torch.min(torch.max(point, (x - eps).clamp(min=0)), (x + eps).clamp(max=1))

    @staticmethod
    def random_point(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        return LInf.project(x + uniform_noise(x, eps, generator), x, eps)

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).flatten(1).abs().amax(1)


@THREATS.register("l2")
class L2(Threat):
    summary = "L2: the perturbation's Euclidean norm is at most ε"

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        return grad / (_per_sample_norm(grad) + TINY)

    @staticmethod
    def project(point: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        delta = point - x
        delta = delta * (eps / (_per_sample_norm(delta) + TINY)).clamp(max=1)
        return (x + delta).clamp(0, 1)

    @staticmethod
    def random_point(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """A uniform direction at a uniform radius in [0, ε] (as torchattacks' PGDL2)."""
        device = generator.device if generator is not None else x.device
        direction = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        radius = torch.rand((len(x),), generator=generator, device=device, dtype=x.dtype).to(x.device)
        delta = direction / (_per_sample_norm(direction) + TINY) * radius.view(-1, *[1] * (x.ndim - 1)) * eps
        return (x + delta).clamp(0, 1)

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).flatten(1).norm(dim=1)
