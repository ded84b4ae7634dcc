"""Models by name, with one constructor convention.

Every registered factory is called as ``factory(num_classes=..., in_shape=(C, H, W), **hparams)``, so a
config or the CLI can build any model from its name and a dict of hyper-parameters. Besides the registered
names, three sources build models from elsewhere the same way: ``torchvision:<arch>`` (any torchvision
classification architecture), ``timm:<name>`` (any timm architecture, :mod:`~dlapps.models.timm_models`) and
``file.py:factory`` / ``package.module:factory`` (a user's own code, :mod:`~dlapps.models.factory`). Their
models are made to take images in [0, 1] and to output logits (:func:`as_classifier`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models.factory import factory_model, factory_of, is_factory_name
from dlapps.models.layers import Normalize
from dlapps.models.timm_models import TIMM, check_timm_name, pretrained_config, timm_model
from dlapps.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
TORCHVISION = "torchvision:"


def list_models() -> list[str]:
    return list(MODELS)


def torchvision_architectures() -> list[str]:
    return list(torchvision.models.list_models(module=torchvision.models))


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def source_of(name: str) -> str:
    """Where the model ``name`` comes from: ``registered``, ``torchvision``, ``timm``, ``factory`` or ``file``
    (anything else: a checkpoint or weights file)."""
    if name in MODELS:
        return "registered"
    if name.startswith(TORCHVISION):
        return "torchvision"
    if name.startswith(TIMM):
        return "timm"
    return "factory" if is_factory_name(name) else "file"


def is_architecture(name: str) -> bool:
    """Whether ``name`` names an architecture (which a weights file or a training here completes)."""
    return source_of(name) != "file"


def default_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The input normalisation weights for architecture ``name`` usually expect, where its source says: ImageNet's
    for torchvision, the pretrained config's for timm (None: the data's own is the best guess)."""
    if name.startswith(TORCHVISION):
        return IMAGENET_MEAN, IMAGENET_STD
    if name.startswith(TIMM):
        config = pretrained_config(name.removeprefix(TIMM))
        if config.get("mean") and config.get("std"):
            return tuple(config["mean"]), tuple(config["std"])
    return None


class _UnitImages:
    """Forward pre-hook: standardise the input with the model's :class:`Normalize` (the attribute ``name``),
    moved to the input's device on first use there."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        normalize = getattr(module, self.name)
        if normalize.mean.device != args[0].device:
            normalize.to(args[0].device)
        return (normalize(args[0]), *args[1:])


def logits_of(output: object) -> object:
    """The logits in a model's output: the output itself, the first item of a tuple or list, or ``logits`` of a
    mapping or of an object that has them (Hugging Face's outputs). Anything else is returned as it is, for
    :func:`~dlapps.models.classifier.check_input` to refuse."""
    if isinstance(output, tuple | list) and output:
        return output[0]
    if isinstance(output, Mapping):
        return output.get("logits", output)
    return getattr(output, "logits", output)


def _logits_output(module: nn.Module, args: tuple[torch.Tensor, ...], output: object) -> object:
    return logits_of(output)


def as_classifier(model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None) -> nn.Module:
    """``model``, taking images in [0, 1] and outputting logits like every dlapps model, in place: a
    :class:`Normalize` runs as a forward pre-hook and a forward hook keeps the logits of a tuple or mapping
    output. The model stays its author's own: same class, same layers, same state-dict keys, so weight files
    for it load strictly. The normalisation is a plain attribute, not a submodule, since an ``nn.Sequential``
    runs every submodule it holds."""
    name = "normalize" if not hasattr(model, "normalize") else "dlapps_normalize"
    object.__setattr__(model, name, Normalize(mean, std))
    model.register_forward_pre_hook(_UnitImages(name))
    model.register_forward_hook(_logits_output)
    return model


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
    return as_classifier(torchvision.models.get_model(arch, weights=None, num_classes=num_classes), mean, std)


def accepted_settings(name: str) -> set[str] | None:
    """The settings architecture ``name`` takes besides ``num_classes`` / ``in_shape`` (None: whatever its
    constructor takes, found only when it is called: a timm model, a factory that takes ``**kwargs``)."""
    source = source_of(name)
    if source == "torchvision":
        return {"mean", "std"}
    if source == "timm":
        return None
    factory = factory_of(name) if source == "factory" else MODELS[name]
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters) - {"num_classes", "in_shape"} | ({"mean", "std"} if source == "factory" else set())


def check_settings(name: str, settings: Iterable[str]) -> None:
    """A :class:`ConfigError` naming what architecture ``name`` takes unless it takes every one of ``settings``."""
    accepted = accepted_settings(name)
    unknown = set(settings) - accepted if accepted is not None else set()
    if unknown:
        raise ConfigError(
            f"model {name!r} takes no {', '.join(sorted(unknown))}; it takes {', '.join(sorted(accepted)) or 'nothing'}"
        )


def create_model(
    name: str, *, num_classes: int | None, in_shape: tuple[int, int, int], download: bool = False, **hparams: Any
) -> nn.Module:
    """Build a model by name (see the module docstring); unknown names and hyper-parameters are a
    :class:`ConfigError`. ``num_classes`` None keeps the number of outputs of timm's pretrained weights
    (``pretrained=True``), which ``download`` allows to be fetched."""
    source = source_of(name)
    check_settings(name, hparams)
    if source in ("timm", "factory"):
        mean, std = hparams.pop("mean", None), hparams.pop("std", None)
        if source == "timm":
            model = timm_model(name.removeprefix(TIMM), num_classes=num_classes, in_shape=in_shape, download=download,
                               **hparams)  # fmt: skip
        else:
            model = factory_model(name, num_classes=num_classes, in_shape=in_shape, **hparams)
        return as_classifier(model, mean, std)
    if source == "torchvision":
        return torchvision_model(name.removeprefix(TORCHVISION), num_classes=num_classes, **hparams)
    return MODELS[name](num_classes=num_classes, in_shape=in_shape, **hparams)


def non_default(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` without those equal to the architecture's own defaults: one model, one spelling (so that two
    studies asking for the same model by different words share its training)."""
    if name not in MODELS:
        return dict(hparams)
    defaults = {k: p.default for k, p in inspect.signature(MODELS[name]).parameters.items()}
    return {k: v for k, v in hparams.items() if k not in defaults or v != defaults[k]}


TITLES = {"small_cnn": "small CNN", "mlp": "MLP", "residual_mlp": "ResidualMLP", "mobilenet_v2": "MobileNetV2"}


def architecture_title(name: str, hparams: dict[str, Any] | None = None) -> str:
    """``resnet20`` -> ``ResNet-20``, ``cifar_resnet`` with 5 blocks -> ``ResNet-32``, ``small_cnn`` -> ``small CNN``,
    ``timm:vit_tiny_patch16_224`` as it is, ``nets/my.py:build`` -> ``build from my.py``."""
    source = source_of(name)
    if source == "timm":
        return name
    if source == "factory":
        module, _, attribute = name.rpartition(":")
        return f"{attribute} from {Path(module).name}"
    hparams, name = hparams or {}, name.removeprefix(TORCHVISION)
    if name == "cifar_resnet":
        return f"{'ResNet' if hparams.get('skip', True) else 'Plain'}-{6 * hparams.get('blocks', 3) + 2}"
    if match := re.fullmatch(r"resnet(\d+)", name):
        return f"ResNet-{match.group(1)}"
    return TITLES.get(name, name)


def model_slug(name: str) -> str:
    """A file-name-safe word for architecture ``name`` (checkpoint names start with it)."""
    if source_of(name) == "factory":
        module, _, attribute = name.rpartition(":")
        name = f"{Path(module).stem}-{attribute}"
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name.removeprefix(TORCHVISION)).strip("-.")


class ArchitectureNames:
    """Config checker: a registered architecture, ``torchvision:<arch>``, ``timm:<name>`` or a factory."""

    @staticmethod
    def check(name: str) -> None:
        source = source_of(name)
        if source == "torchvision":
            arch = name.removeprefix(TORCHVISION)
            if arch not in torchvision_architectures():
                raise ConfigError(f"unknown torchvision architecture {arch!r}; see torchvision.models.list_models()")
        elif source == "timm":
            check_timm_name(name.removeprefix(TIMM))
        elif source == "factory":
            factory_of(name)
        else:
            MODELS.check(name)


ARCHITECTURE = ArchitectureNames()
