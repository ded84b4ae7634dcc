"""Energy score: ``S(x) = -E(x; T) = T * logsumexp_c(f_c(x) / T)``.

Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020. The negative free energy
is, up to a constant, the log of the input's density under the classifier seen as an energy-based model.
"""

from __future__ import annotations

import torch

from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.features import Outputs


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N, classes) logits -> (N,) negative energy ``T * logsumexp(logits / T)``."""
    return temperature * torch.logsumexp(logits / temperature, dim=1)


@DETECTORS.register("energy")
class Energy(OutputDetector):
    name = "Energy"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return energy_score(outputs.logits, self.temperature)
