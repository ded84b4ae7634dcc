"""Models by name, with one constructor convention.

Every registered factory is called as ``factory(num_classes=..., in_shape=(C, H, W), **hparams)``, so a
config or the CLI can build any model from its name and a dict of hyper-parameters. Besides the registered
names, ``torchvision:<arch>`` builds any torchvision classification architecture (``torchvision:resnet50``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models.layers import Normalize
from dlapps.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
TORCHVISION = "torchvision:"


def list_models() -> list[str]:
    return list(MODELS)


def torchvision_architectures() -> list[str]:
    return list(torchvision.models.list_models(module=torchvision.models))


def _normalize_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (module.normalize(args[0]), *args[1:])


def torchvision_model(
    arch: str, *, num_classes: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> nn.Module:
    """A torchvision classification architecture, untrained, taking images in [0, 1] like every dlapps model.

    The normalisation runs as a forward pre-hook of a ``normalize`` submodule, so the model stays torchvision's
    own: same class, same layer names, same state-dict keys (torchvision weight files load strictly).
    """
    if arch not in torchvision_architectures():
        raise ConfigError(
            f"unknown torchvision architecture {arch!r}; e.g. {', '.join(torchvision_architectures()[:8])}, ..."
        )
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    model.normalize = Normalize(mean, std)
    model.register_forward_pre_hook(_normalize_input)
    return model


def create_model(name: str, *, num_classes: int, in_shape: tuple[int, int, int], **hparams: Any) -> nn.Module:
    """Build a registered model (or ``torchvision:<arch>``); unknown names and hyper-parameters are a
    :class:`ConfigError`."""
    if name.startswith(TORCHVISION):
        unknown = set(hparams) - {"mean", "std"}
        if unknown:
            raise ConfigError(f"{name} takes no {', '.join(sorted(unknown))}")
        return torchvision_model(name.removeprefix(TORCHVISION), num_classes=num_classes, **hparams)
    factory = MODELS[name]
    accepted = set(inspect.signature(factory).parameters) - {"num_classes", "in_shape"}
    unknown = set(hparams) - accepted
    if unknown:
        raise ConfigError(
            f"model {name!r} takes no {', '.join(sorted(unknown))}; it takes {', '.join(sorted(accepted))}"
        )
    return factory(num_classes=num_classes, in_shape=in_shape, **hparams)


def non_default(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` without those equal to the architecture's own defaults: one model, one spelling (so that two
    studies asking for the same model by different words share its training)."""
    if name not in MODELS:
        return dict(hparams)
    defaults = {k: p.default for k, p in inspect.signature(MODELS[name]).parameters.items()}
    return {k: v for k, v in hparams.items() if k not in defaults or v != defaults[k]}


TITLES = {"small_cnn": "small CNN", "mlp": "MLP", "residual_mlp": "ResidualMLP", "mobilenet_v2": "MobileNetV2"}


def architecture_title(name: str, hparams: dict[str, Any] | None = None) -> str:
    """``resnet20`` -> ``ResNet-20``, ``cifar_resnet`` with 5 blocks -> ``ResNet-32``, ``small_cnn`` -> ``small CNN``."""
    hparams, name = hparams or {}, name.removeprefix(TORCHVISION)
    if name == "cifar_resnet":
        return f"{'ResNet' if hparams.get('skip', True) else 'Plain'}-{6 * hparams.get('blocks', 3) + 2}"
    if match := re.fullmatch(r"resnet(\d+)", name):
        return f"ResNet-{match.group(1)}"
    return TITLES.get(name, name)


class ArchitectureNames:
    """Config checker: a registered architecture or ``torchvision:<arch>``."""

    @staticmethod
    def check(name: str) -> None:
        if name.startswith(TORCHVISION):
            arch = name.removeprefix(TORCHVISION)
            if arch not in torchvision_architectures():
                raise ConfigError(f"unknown torchvision architecture {arch!r}; see torchvision.models.list_models()")
        else:
            MODELS.check(name)


ARCHITECTURE = ArchitectureNames()
