"""Reaching into a model by layer name, with hooks that never outlive the call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from dlapps.errors import ConfigError


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name is an error listing the valid ones."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        names = [n for n, m in modules.items() if n and not isinstance(m, nn.Sequential | nn.ModuleList)]
        shown = ", ".join(names[-12:])
        raise ConfigError(f"{type(model).__name__} has no layer {name!r}; its last layers are: {shown}")
    return modules[name]


@contextmanager
def capture_output(model: nn.Module, name: str) -> Iterator[list[torch.Tensor]]:
    """Collect the output of layer ``name`` on every forward pass (graph kept); the hook is always removed."""
    outputs: list[torch.Tensor] = []
    handle = get_layer(model, name).register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode and give it back in the mode it was found in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
