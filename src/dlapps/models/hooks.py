"""Reaching into a model: layers by name, forward hooks that never outlive the call, and mode handling.

Explanations, OOD detectors and attacks all go through these, so a layer name means the same thing to
each of them and no analysis leaves a hook behind or a model in another mode than it found it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models.spatial import feature_maps


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (or buffers) are; the CPU for a model that has neither."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by its dotted name (the model itself left out)."""
    return {name: module for name, module in model.named_modules() if name}


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name is an error listing the model's last layers."""
    layers = named_layers(model)
    if name not in layers:
        names = [n for n, m in layers.items() if not isinstance(m, nn.Sequential | nn.ModuleList)]
        raise ConfigError(
            f"{type(model).__name__} has no layer {name!r}; its last layers are: {', '.join(names[-12:])}"
        )
    return layers[name]


@contextmanager
def capture(model: nn.Module, name: str, *, inputs: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collect the output (with ``inputs``: the first input) of layer ``name`` on every forward pass.

    The graph is kept, so gradients can flow to what was captured; the hook is removed whatever happens.
    """
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append(args[0] if inputs else output)

    handle = get_layer(model, name).register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def find_head(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The classifier head: the ``nn.Linear`` named ``name``, or the model's last registered ``nn.Linear``."""
    if name is None:
        linears = [n for n, m in named_layers(model).items() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(f"{type(model).__name__} has no nn.Linear layer to use as the classifier head")
        name = linears[-1]
    layer = get_layer(model, name)
    if not isinstance(layer, nn.Linear):
        raise ConfigError(f"the head {name!r} must be an nn.Linear, not {type(layer).__name__}")
    return name, layer


_TOKEN_BLOCK_NORMS = ("norm1", "ln_1")  # the first norm of a transformer block: timm's, torchvision's


@torch.no_grad()
def feature_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The layer class activation maps are computed on by default, found by one forward pass of ``example``.

    Candidates are the modules whose output :func:`~dlapps.models.spatial.feature_maps` lays out as one
    (N, K, h, w) map per image with h·w > 1. If the last of them to finish outputs (N, K, h, w) as it is, the
    model is a convnet and that layer is its last spatial feature map: the outermost one when blocks are nested
    (``layer3`` of a CIFAR ResNet, not ``layer3.2.conv2``). Otherwise the model is a transformer (tokens, or
    channels-last maps as Swin's): the layer is the last transformer block's first norm (``blocks.11.norm1``;
    the layer pytorch-grad-cam recommends, since after the last block only the class token gets a gradient),
    or failing a ``norm1``, the last module outputting tokens. A ViT's patch embedding convolution, which
    outputs (N, K, h, w), is thus never chosen.
    """
    image_size = tuple(example.shape[-2:])
    finished: list[tuple[str, bool]] = []  # (name, whether its output had to be laid out as maps)

    def record(name: str, module: nn.Module, out: object) -> None:
        if not isinstance(out, torch.Tensor) or out.ndim < 3 or out.shape[0] != example.shape[0]:
            return
        try:
            maps = feature_maps(model, out, image_size, layer=module)
        except ConfigError:
            return
        if maps.shape[-1] * maps.shape[-2] > 1:
            finished.append((name, maps is not out))

    handles = [
        module.register_forward_hook(lambda m, _i, out, name=name: record(name, m, out))
        for name, module in named_layers(model).items()
    ]
    try:
        with eval_mode(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise ConfigError(
            f"{type(model).__name__} outputs no spatial feature maps to compute a class activation map on"
        )
    last, laid_out = finished[-1]
    if not laid_out:
        return last
    tokens = [name for name, laid_out in finished if laid_out]
    norms = [name for name in tokens if name.rsplit(".", 1)[-1] in _TOKEN_BLOCK_NORMS]
    return (norms or tokens)[-1]


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Run ``model`` in train or eval mode, then give every submodule back the mode it had."""
    before = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, was_training in before:
            module.training = was_training


def eval_mode(model: nn.Module):
    """:func:`model_mode` in eval mode."""
    return model_mode(model, False)


def require_eval(model: nn.Module) -> None:
    """For analyses fitted to a model: in train mode BatchNorm would learn from, and mix, the batch."""
    if model.training:
        raise ValueError("call model.eval() first: in train mode the model's outputs depend on the batch")
