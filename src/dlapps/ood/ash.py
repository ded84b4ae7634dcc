"""ASH (activation shaping): drop all but the largest penultimate activations of each image, reshape those
kept, then take the energy.

Djurisic, Bozanic, Ashok & Liu, "Extremely Simple Activation Shaping for Out-of-Distribution Detection",
ICLR 2023. With ``h`` an image's activations, ``s1 = sum(h)``, ``K`` the set of its largest ``(100 - p)%``
activations (at least one) and ``s2`` their sum, the kept activations become::

    ASH-P (variant "p"):  h_k                    (prune only)
    ASH-B (variant "b"):  s1 / |K|               (binarise, keeping the sum)
    ASH-S (variant "s"):  h_k * exp(s1 / s2)     (sharpen)

and the rest 0; ``S(x) = logsumexp_c (W ash(h(x)) + b)_c``. Defaults: ASH-S at p = 95, the paper's CIFAR-10
setting. Shaped here after the global pooling, on the head's input, as in OpenOOD (the paper's ImageNet runs
shape the last feature maps before it).
"""

from __future__ import annotations

from typing import Literal

import torch

from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.energy import energy_score
from dlapps.ood.features import Outputs


def keep_largest(activations: torch.Tensor, percentile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) activations -> the values and indices (N, K) of each row's largest ``100 - percentile`` percent,
    ``K = D - round(D * percentile / 100)``, at least 1."""
    width = activations.shape[1]
    kept = max(1, width - round(width * percentile / 100))
    return activations.topk(kept, dim=1)


def shape_activations(activations: torch.Tensor, percentile: float, variant: str) -> torch.Tensor:
    """(N, D) activations shaped by ASH ``variant`` ("p", "b" or "s") at ``percentile``."""
    total = activations.sum(dim=1, keepdim=True)
    values, indices = keep_largest(activations, percentile)
    if variant == "b":
        values = (total / values.shape[1]).expand_as(values)
    elif variant == "s":
        values = values * torch.exp(total / values.sum(dim=1, keepdim=True))
    return torch.zeros_like(activations).scatter(1, indices, values)


def check_percentile(percentile: float) -> None:
    """Percentiles of the activations to drop are in [0, 100)."""
    if not 0 <= percentile < 100:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")


@DETECTORS.register("ash")
class ASH(OutputDetector):
    name = "ASH"

    def __init__(self, percentile: float = 95.0, variant: Literal["p", "b", "s"] = "s") -> None:
        super().__init__()
        check_percentile(percentile)
        if variant not in ("p", "b", "s"):
            raise ValueError(f"variant must be 'p', 'b' or 's' (ASH-P, -B, -S), got {variant!r}")
        self.percentile, self.variant = percentile, variant

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return energy_score(self.head_logits(shape_activations(outputs.features, self.percentile, self.variant)))
