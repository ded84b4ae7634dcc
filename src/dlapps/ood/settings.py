"""Detectors by name: :func:`create_detector`, and :class:`DetectorSettings`, a run's hyper-parameters of any
registered detector by name (the constructor's keyword arguments)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dlapps.config import check_type
from dlapps.errors import ConfigError
from dlapps.ood.base import DETECTORS, Detector

Pairs = tuple[tuple[str, Any], ...]  # a JSON object as sorted (key, value) pairs, lists as tuples


def hyperparameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments of detector ``name``'s constructor, its hyper-parameters."""
    return dict(list(inspect.signature(DETECTORS[name].__init__).parameters.items())[1:])


def create_detector(name: str, **hparams: Any) -> Detector:
    """A detector by registry name; an unknown name, hyper-parameter or a bad value is a :class:`ConfigError`."""
    cls, accepted = DETECTORS[name], hyperparameters(name)
    unknown = set(hparams) - set(accepted)
    if unknown:
        takes = ", ".join(accepted) or "nothing"
        raise ConfigError(f"detector {name!r} takes no {', '.join(sorted(unknown))}; it takes {takes}")
    annotations = typing.get_type_hints(cls.__init__)
    for key, value in hparams.items():
        check_type(value, annotations[key], f"detector {name!r}: {key}")
    try:
        return cls(**hparams)
    except ValueError as exc:
        raise ConfigError(f"detector {name!r}: {exc}") from None


def as_pairs(value: Any) -> Any:
    """JSON-parsed ``value`` made immutable: objects as sorted (key, value) pairs, lists as tuples."""
    if isinstance(value, dict):
        return tuple(sorted((key, as_pairs(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return tuple(as_pairs(item) for item in value)
    return value


@dataclass(frozen=True)
class DetectorSettings:
    """Hyper-parameters by detector, e.g. ``--set 'detector={"react": {"percentile": 95}, "knn": {"k": 10}}'``.

    A detector or hyper-parameter not named keeps its constructor's default, the paper's CIFAR setting.
    """

    shorthand: ClassVar[str] = "hparams"  # ``detector=...`` sets ``detector.hparams``
    hparams: tuple[tuple[str, Pairs], ...] = ()  # detector -> its (keyword, value) pairs

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", as_pairs(self.hparams))  # a parsed JSON object's inner objects too

    def validate(self) -> None:
        for name, hparams in self.hparams:
            create_detector(name, **dict(hparams))

    def set_for(self, name: str) -> dict[str, Any]:
        """The hyper-parameters of detector ``name`` set here."""
        return dict(dict(self.hparams).get(name, ()))

    def hparams_of(self, name: str) -> dict[str, Any]:
        """Every hyper-parameter of detector ``name`` in this run: its constructor's defaults, with those set here."""
        defaults = {key: p.default for key, p in hyperparameters(name).items() if p.default is not p.empty}
        return defaults | self.set_for(name)

    def create(self, names: Sequence[str], id_classes: tuple[int, ...] | None = None) -> dict[str, Detector]:
        """The detectors ``names`` with these settings; ``id_classes``: the outputs that are ID classes, where the
        model has more outputs than the dataset has classes (detectors taking ``classes`` then use only those)."""
        detectors = {}
        for name in names:
            hparams = self.set_for(name)
            if id_classes is not None and "classes" in hyperparameters(name):
                hparams = {"classes": id_classes} | hparams
            detectors[name] = create_detector(name, **hparams)
        return detectors
