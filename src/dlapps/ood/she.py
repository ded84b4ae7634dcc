"""SHE (simplified Hopfield energy): similarity of the features to the stored pattern of the predicted class.

Zhang et al., "Out-of-Distribution Detection based on In-Distribution Data Patterns Memorization with Modern
Hopfield Energy", ICLR 2023. With ``S_c`` the mean penultimate feature of the *correctly classified* ID training
images of class ``c`` and ``yhat`` the predicted class::

    S(x) = h(x) . S_yhat

The paper derives it as the energy of a modern Hopfield network that has memorised the class patterns, reduced
to one inner product. No hyper-parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from dlapps.ood.base import DETECTORS, OutputDetector, precise
from dlapps.ood.features import Outputs
from dlapps.ood.mahalanobis import class_means


@DETECTORS.register("she")
class SHE(OutputDetector):
    """``classes``: the outputs that are in-distribution classes, as for :class:`Mahalanobis`; the predicted
    class is the most likely of them."""

    name = "SHE"
    needs_data = True

    def __init__(self, classes: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.classes = classes

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        labels, self.class_outputs = outputs.class_labels(self.name), outputs.id_classes(self.classes)
        correct = self.class_outputs[self._predicted(outputs)] == labels
        images = "correctly classified ID training images"
        self.patterns, _ = class_means(outputs.features[correct], labels[correct], self.class_outputs, images)

    def _predicted(self, outputs: Outputs) -> torch.Tensor:
        """The most likely ID class of each image, as a row of :attr:`patterns`."""
        return outputs.logits[:, self.class_outputs].argmax(dim=1)

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        return (precise(outputs.features) * self.patterns[self._predicted(outputs)]).sum(dim=1)
