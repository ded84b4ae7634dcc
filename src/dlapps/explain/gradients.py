"""Per-layer gradient magnitudes, with weights and biases kept as separate series.

Mixing weight and bias gradients in one series gives a zig-zag (biases get much smaller gradients than
weights of the same layer), which hides the trend across depth that this analysis is for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LayerGradients:
    """Mean L2 norm of the loss gradient of each layer's weight and bias, in forward order."""

    names: tuple[str, ...]
    weight: torch.Tensor  # (layers,)
    bias: torch.Tensor  # (layers,); NaN for a layer without bias

    def as_dict(self) -> dict[str, list]:
        return {"names": list(self.names), "weight": self.weight.tolist(), "bias": self.bias.tolist()}


def layer_gradient_norms(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    layer_types: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d),
) -> LayerGradients:
    """Average over ``batches`` of ``||dL/dW||`` and ``||dL/db||`` for every layer of ``layer_types``.

    Gradients come from ``torch.autograd.grad``: parameters' ``.grad`` and the model's mode are untouched.
    Layers are listed in registration order, which is forward order for sequential models.
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, layer_types)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no layer of type {[t.__name__ for t in layer_types]}")
    params = [m.weight for _, m in layers] + [m.bias for _, m in layers if m.bias is not None]
    has_bias = [m.bias is not None for _, m in layers]
    weight_sum = torch.zeros(len(layers))
    bias_sum = torch.zeros(sum(has_bias))
    count = 0
    for inputs, labels in batches:
        grads = torch.autograd.grad(loss_fn(model(inputs), labels), params)
        norms = torch.stack([g.detach().float().norm() for g in grads]).cpu()
        weight_sum += norms[: len(layers)]
        bias_sum += norms[len(layers) :]
        count += 1
    if count == 0:
        raise ValueError("no batches given")
    bias = torch.full((len(layers),), float("nan"))
    bias[torch.tensor(has_bias)] = bias_sum / count
    return LayerGradients(tuple(name for name, _ in layers), weight_sum / count, bias)
