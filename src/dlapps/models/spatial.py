"""A layer's output as spatial feature maps (N, K, h, w), whatever the model's family.

Class activation maps weigh the channels of a grid of features. Convnets output that grid as (N, K, h, w);
vision transformers output tokens (N, T, D), some of them (class, register, distillation tokens) belonging to no
place in the image; Swin-like models keep their grid channels-last (N, H, W, C). Turning each into (N, K, h, w)
here lets every CAM method, and the choice of the default layer, treat all of them alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dlapps.errors import ConfigError

MAX_PREFIX_TOKENS = 8  # class + distillation + register tokens seen in practice (ViT: 1, DeiT: 2, +4 registers)

_TIMM_ATTRIBUTES = ("num_prefix_tokens", "patch_embed", "output_fmt")
# Layers that output channels-first maps even inside a channels-last model (Swin's patch embedding convolution).
_CHANNELS_FIRST = (nn.Conv2d, _BatchNorm, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _describer(model: nn.Module) -> nn.Module:
    """The (sub)module that says how the features are laid out: the first one with timm's attributes
    (``num_prefix_tokens``, ``patch_embed``, ``output_fmt``) among the model and the two levels below it, so a
    wrapped timm model is read like a bare one (not deeper: this runs for every layer when a default is chosen)."""
    level = [model]
    for _ in range(3):
        for module in level:  # dictionary look-ups: hasattr's exceptions are slow on hundreds of layers
            if any(a in module.__dict__ or a in module._modules for a in _TIMM_ATTRIBUTES):
                return module
        level = [child for module in level for child in module.children()]
    return model


def channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D features are (N, H, W, C): timm says so with ``output_fmt == "NHWC"`` (Swin)."""
    return str(getattr(_describer(model), "output_fmt", "NCHW")).upper().endswith("NHWC")


def _grid_from_aspect(patches: int, image_size: tuple[int, int]) -> tuple[int, int] | None:
    """The (h, w) with h·w = ``patches`` and h/w equal to the image's aspect ratio, if there is one."""
    height, width = image_size
    # h/w = H/W and h*w = P  =>  h = sqrt(P*H/W); checked exactly in integers.
    h = round(math.sqrt(patches * height / width))
    for candidate in (h - 1, h, h + 1):
        if candidate > 0 and patches % candidate == 0 and candidate * width == (patches // candidate) * height:
            return candidate, patches // candidate
    return None


def token_grid(model: nn.Module, tokens: int, image_size: tuple[int, int]) -> tuple[int, int, int] | None:
    """(prefix, h, w) for ``tokens`` tokens: how many lead tokens hold no place, and the patch grid of the rest.

    The prefix is the model's ``num_prefix_tokens`` where it has one, the grid its ``patch_embed.grid_size``
    where that fits; what is missing is inferred from the token count and the image's aspect ratio, trying the
    fewest prefix tokens first (at most :data:`MAX_PREFIX_TOKENS`). None when no reading fits.
    """
    describer = _describer(model)
    grid = getattr(getattr(describer, "patch_embed", None), "grid_size", None)
    grid = (int(grid[0]), int(grid[1])) if grid is not None and len(grid) == 2 else None
    known = getattr(describer, "num_prefix_tokens", None)
    # A known prefix, or none (what the patch embedding outputs before the class token is added).
    prefixes = [int(known), 0] if isinstance(known, int) else range(MAX_PREFIX_TOKENS + 1)
    for prefix in prefixes:
        patches = tokens - prefix
        if patches <= 0:
            continue
        if grid is not None and grid[0] * grid[1] == patches:
            return prefix, *grid
        shape = _grid_from_aspect(patches, image_size)
        if shape is not None:
            return prefix, *shape
    return None


def feature_maps(
    model: nn.Module,
    activation: torch.Tensor,
    image_size: tuple[int, int],
    *,
    layer: nn.Module | None = None,
    name: str = "the layer",
) -> torch.Tensor:
    """What a layer of ``model`` output, as (N, K, h, w) maps of the image of size ``image_size`` (H, W).

    - (N, K, h, w) of a channels-first model: unchanged;
    - (N, H, W, C) of a channels-last model (:func:`channels_last`): permuted to (N, C, H, W), unless ``layer``
      (the module that output it) is a convolution, batch norm or pooling layer, which are channels-first anyway;
    - (N, T, D) tokens: the prefix tokens dropped and the rest laid on the patch grid (:func:`token_grid`), as
      pytorch-grad-cam's ViT example does (``t[:, prefix:].reshape(N, h, w, D).permute(0, 3, 1, 2)``);
    - anything else: a :class:`~dlapps.errors.ConfigError` naming ``name`` and the shape it output.

    The layout depends only on the shape, so a gradient with respect to ``activation`` (which autograd gives
    for the raw output, not for the maps made from it) is laid out by the same call exactly as the activation.
    """
    shape = tuple(activation.shape) if isinstance(activation, torch.Tensor) else None
    if shape is not None and len(shape) == 4:
        if channels_last(model) and not isinstance(layer, _CHANNELS_FIRST):
            return activation.permute(0, 3, 1, 2)
        return activation
    if shape is not None and len(shape) == 3:
        found = token_grid(model, shape[1], tuple(image_size))
        if found is not None:
            prefix, h, w = found
            return activation[:, prefix:, :].reshape(shape[0], h, w, shape[2]).permute(0, 3, 1, 2)
    what = f"shape {shape}" if shape is not None else f"a {type(activation).__name__}"
    raise ConfigError(
        f"{name} must output (N, K, h, w) feature maps or (N, tokens, D) tokens on the patch grid of the "
        f"{image_size[0]}x{image_size[1]} image for a CAM, not {what}; choose a conv stage or a block's norm1"
    )
