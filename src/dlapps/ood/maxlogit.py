"""Maximum logit: ``S(x) = max_c f_c(x)``.

Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022. Unlike MSP it
keeps the logits' magnitude, which softmax normalises away.
"""

from __future__ import annotations

import torch

from dlapps.ood.base import DETECTORS, OutputDetector
from dlapps.ood.features import Outputs


@DETECTORS.register("maxlogit")
class MaxLogit(OutputDetector):
    name = "MaxLogit"

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return outputs.logits.amax(dim=1)
