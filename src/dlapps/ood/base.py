"""The one detector API: ``fit(model, id_train_data)``, then ``score(x)``; higher scores mean more ID."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.errors import ConfigError, DlappsError
from dlapps.models.hooks import find_head, model_device, require_eval
from dlapps.ood.features import Batches, Outputs, collect_outputs, head_outputs
from dlapps.registry import Registry


class NotFittedError(DlappsError, RuntimeError):
    """A detector was used before ``fit`` bound it to a model (and, where needed, to ID statistics)."""


def precise(values: torch.Tensor) -> torch.Tensor:
    """``values`` in float64 where the device has it (not Apple MPS), for sums and inverses that need it."""
    return values.float() if values.device.type == "mps" else values.double()


def check_head_gives_logits(outputs: Outputs, head: nn.Linear, name: str, detector: str) -> None:
    """A :class:`ConfigError` unless the logits are ``head`` applied to the features (not so for a distilled
    DeiT, whose logits average two heads, or a model that scales its logits after the head)."""
    logits = F.linear(outputs.features[:64].to(head.weight.dtype), head.weight, head.bias)
    if not torch.allclose(logits, outputs.logits[:64].to(logits.dtype), rtol=1e-3, atol=1e-3):
        raise ConfigError(
            f"{detector} computes logits with the head {name!r}, but the model's logits are not that layer's output "
            "(several heads, or something after the head)"
        )


class Detector:
    """Scores images by how in-distribution they look: **higher = more in-distribution**.

    ``fit(model, id_train_data)`` binds the detector to a model in eval mode and, for detectors that set
    ``needs_data``, estimates in-distribution statistics from ``id_train_data`` (an ``ImageArrays`` or
    ``(images, labels)`` batches, images in [0, 1]). Every detector must be fitted before ``score``.
    """

    name: ClassVar[str]
    needs_data: ClassVar[bool] = False
    # "slow": scoring (or fitting) runs backward passes, several times the cost of the shared forward pass
    cost: ClassVar[Literal["fast", "slow"]] = "fast"
    # computes logits from (changed) features with the head's weights, so the logits must be the head's output
    reads_head: ClassVar[bool] = False

    def __init__(self) -> None:
        self._model: nn.Module | None = None
        self._head: str | None = None

    def fit(
        self,
        model: nn.Module,
        id_train_data: Batches | None = None,
        *,
        head: str | None = None,
        batch_size: int | None = None,
    ) -> Detector:
        """Bind to ``model`` (its classifier head ``head``, default its last ``nn.Linear``); learn ID statistics."""
        head_name, _ = find_head(model, head)
        if not self.needs_data or id_train_data is None:
            return self.fit_outputs(model, None, head=head_name)
        return self._fit_data(model, id_train_data, head_name, batch_size)

    def _fit_data(self, model: nn.Module, data: Batches, head: str, batch_size: int | None) -> Detector:
        """:meth:`fit` with ID data: from the outputs of one pass over it, unless a detector makes its own."""
        return self.fit_outputs(model, collect_outputs(model, data, head, batch_size), head=head)

    def fit_outputs(self, model: nn.Module, outputs: Outputs | None, *, head: str | None = None) -> Detector:
        """:meth:`fit` from outputs already computed on ID data, so one forward pass serves many detectors."""
        require_eval(model)
        head_name, linear = find_head(model, head)
        if self.needs_data:
            if outputs is None:
                raise NotFittedError(f"{self.name} needs in-distribution statistics: call fit(model, id_train_data)")
            if self.reads_head:
                check_head_gives_logits(outputs, linear, head_name, self.name)
            self._fit(outputs, linear)
        self._model, self._head = model, head_name
        return self

    def _fit(self, outputs: Outputs, head: nn.Linear) -> None:
        """Estimate ID statistics from outputs (detectors with ``needs_data`` override it, or :meth:`_fit_data`)."""
        raise NotImplementedError(f"{self.name} learns its statistics in its own pass: call fit(model, id_train_data)")

    def bound(self) -> tuple[nn.Module, str]:
        """The fitted model and the name of its head; a :class:`NotFittedError` before ``fit``."""
        if self._model is None or self._head is None:
            data = ", id_train_data" if self.needs_data else ""
            raise NotFittedError(f"{self.name} is not fitted: call fit(model{data}) before score")
        return self._model, self._head

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The fitted model's head applied to (changed) ``features`` (N, D), without a graph."""
        model, head = self.bound()
        with torch.no_grad():
            return find_head(model, head)[1](features)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N,) of images ``x`` (N, C, H, W) in [0, 1], on the model's device."""
        raise NotImplementedError


class OutputDetector(Detector):
    """A detector that needs only the model's logits and head features, so one forward pass serves all."""

    def score(self, x: torch.Tensor) -> torch.Tensor:
        model, head = self.bound()
        with torch.no_grad():
            return self.score_outputs(head_outputs(model, x.to(model_device(model)), head))

    def score_outputs(self, outputs: Outputs) -> torch.Tensor:
        raise NotImplementedError


# ``@DETECTORS.register(name)`` on a Detector subclass; its hyper-parameters are its constructor's keyword arguments.
DETECTORS: Registry[type[Detector]] = Registry("detector")


def fast_detectors() -> tuple[str, ...]:
    """The registered detectors that need no backward pass: what a quick run can afford."""
    return tuple(name for name, detector in DETECTORS.items() if detector.cost == "fast")
