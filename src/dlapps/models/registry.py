"""Models by name, with one constructor convention.

Every registered factory is called as ``factory(num_classes=..., in_shape=(C, H, W), **hparams)``, so a
config or the CLI can build any model from its name and a dict of hyper-parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from dlapps.errors import ConfigError

ModelFactory = Callable[..., nn.Module]
_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, *, num_classes: int, in_shape: tuple[int, int, int], **hparams: Any) -> nn.Module:
    """Build a registered model; unknown names and hyper-parameters are :class:`ConfigError`."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    factory = _MODELS[name]
    accepted = set(inspect.signature(factory).parameters) - {"num_classes", "in_shape"}
    unknown = set(hparams) - accepted
    if unknown:
        raise ConfigError(
            f"model {name!r} takes no {', '.join(sorted(unknown))}; it takes {', '.join(sorted(accepted))}"
        )
    return factory(num_classes=num_classes, in_shape=in_shape, **hparams)
