"""Detectors by name: :func:`create_detector`, and :class:`DetectorSettings`, the hyper-parameters of a run's."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dlapps.config import NonNegativeFloat, PositiveFloat, PositiveInt, require
from dlapps.errors import ConfigError
from dlapps.ood.base import DETECTORS, Detector


def create_detector(name: str, **hparams: Any) -> Detector:
    """A detector by registry name; unknown names or hyper-parameters are a :class:`ConfigError`."""
    cls = DETECTORS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(hparams) - accepted
    if unknown:
        takes = ", ".join(sorted(accepted)) or "nothing"
        raise ConfigError(f"detector {name!r} takes no {', '.join(sorted(unknown))}; it takes {takes}")
    return cls(**hparams)


@dataclass(frozen=True)
class DetectorSettings:
    """Detector hyper-parameters; the defaults are each paper's CIFAR settings."""

    odin_temperature: PositiveFloat = 1000.0
    odin_epsilon: NonNegativeFloat = 0.0014
    knn_k: PositiveInt = 50
    vim_dim: PositiveInt | None = None  # principal-subspace dimension; None: the paper's rule (N/2 for small N)
    react_percentile: PositiveFloat = 90.0

    def validate(self) -> None:
        require(self.react_percentile <= 100, f"react_percentile must be in (0, 100], got {self.react_percentile}")

    def hparams(self, detector: str) -> dict[str, Any]:
        return {
            "odin": {"temperature": self.odin_temperature, "epsilon": self.odin_epsilon},
            "knn": {"k": self.knn_k},
            "vim": {"dim": self.vim_dim},
            "react": {"percentile": self.react_percentile},
        }.get(detector, {})

    def create(self, names: Sequence[str], id_classes: tuple[int, ...] | None = None) -> dict[str, Detector]:
        """The detectors ``names`` with these settings; ``id_classes``: the outputs that are ID classes, where the
        model has more outputs than the dataset has classes (Mahalanobis then fits only those)."""
        hparams = {name: self.hparams(name) for name in names}
        if "mahalanobis" in hparams and id_classes is not None:
            hparams["mahalanobis"] = {"classes": id_classes}
        return {name: create_detector(name, **hparams[name]) for name in names}
