"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, Score-CAM and LayerCAM for a convnet's or a vision
transformer's layer by name.

Every method returns one map per image, for one target class per image (default: the predicted class),
computed from the activations ``A`` (N, K, h, w) of the chosen layer as ``relu(sum_k w_k A_k)`` (LayerCAM:
``relu(sum_k W_k * A_k)`` with per-pixel weights), then upsampled bilinearly to the input size and min-max
normalised to [0, 1] per image. A transformer's tokens (N, T, D) or channels-last maps are laid out as
(N, K, h, w) by :func:`~dlapps.models.spatial.feature_maps`, and their gradients the same way. Models run in
eval mode and come back in the mode they were in; hooks are removed after every call.

Methods are registered in :data:`CAM_METHODS` (``@CAM_METHODS.register(name)`` on a function
``method(model, x, layer, targets=None, **options)``).

- CAM (Zhou et al. 2016): ``w_k`` = the class's weights in the linear layer after global average pooling.
- Grad-CAM (Selvaraju et al. 2017): ``w_k`` = spatial mean of ``dy_c / dA_k``.
- Grad-CAM++ (Chattopadhay et al. 2018): ``w_k`` = sum over pixels of ``alpha * relu(dy_c/dA_k)`` with the
  closed-form ``alpha`` of their eq. 19 (exponential output assumption).
- Score-CAM (Wang et al. 2020): ``w`` = softmax over channels of the class logit on the input masked by each
  normalised, upsampled ``A_k``; no gradients, one forward pass per channel.
- LayerCAM (Jiang et al. 2021): per-pixel weights ``relu(dy_c / dA)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models.hooks import capture, eval_mode, find_head, get_layer
from dlapps.models.spatial import feature_maps
from dlapps.registry import Registry

_EPS = 1e-7


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of (N, H, W) to [0, 1] (a constant map becomes all zeros)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    shifted = maps - low
    return shifted / (shifted.flatten(1).max(dim=1).values.view(-1, 1, 1) + _EPS)


def _finish(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """relu, normalise, upsample (N, h, w) to ``size``, normalise again.

    Bilinear upsampling commutes with the affine normalisation, so normalising twice only matters through
    the epsilon; it is done to match pytorch-grad-cam to float precision.
    """
    small = normalize_maps(raw.clamp(min=0)).unsqueeze(1)
    up = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
    return normalize_maps(up.squeeze(1)).detach()


def _forward(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None):
    """Logits, the raw output of ``layer``, the target classes (predicted where not given), and the function
    that turns the raw output, or a gradient with respect to it, into (N, K, h, w) maps.

    Gradients must be taken with respect to the raw output (a view made after the forward pass is not in the
    graph), then laid out as maps exactly as the activations are.
    """
    module = get_layer(model, layer)
    with capture(model, layer) as outputs:
        logits = model(x)
    if not outputs:
        raise ConfigError(f"layer {layer!r} was not used in the forward pass")

    def as_maps(tensor: torch.Tensor) -> torch.Tensor:
        maps = feature_maps(model, tensor, tuple(x.shape[-2:]), layer=module, name=f"layer {layer!r}")
        if maps.shape[0] != x.shape[0]:
            raise ConfigError(
                f"layer {layer!r} outputs {maps.shape[0]} maps for {x.shape[0]} images (windows or heads, not "
                "images); choose a layer that outputs one map per image, such as a block's norm1"
            )
        return maps

    output = outputs[-1]
    as_maps(output)  # a layer whose output is no feature map fails here, before any gradient is taken
    if targets is None:
        targets = logits.argmax(dim=1)
    if targets.shape != (x.shape[0],):
        raise ValueError(f"targets must have shape ({x.shape[0]},), got {tuple(targets.shape)}")
    return logits, output, targets.to(logits.device), as_maps


def _activations(model, x, layer, targets):
    """(N, K, h, w) activations of ``layer`` and the target classes, without gradients."""
    _, output, targets, as_maps = _forward(model, x, layer, targets)
    return as_maps(output), targets


def _target_gradients(model, x, layer, targets):
    x = x.detach().requires_grad_(False)
    logits, output, targets, as_maps = _forward(model, x, layer, targets)
    score = logits.gather(1, targets[:, None]).sum()
    (grads,) = torch.autograd.grad(score, output)
    return as_maps(output).detach(), as_maps(grads).detach()


CamMethod = Callable[..., torch.Tensor]
CAM_METHODS: Registry[CamMethod] = Registry("CAM method")


def linear_head(model: nn.Module, classifier: str | None) -> tuple[str, nn.Linear]:
    """The linear layer that must follow global average pooling for plain CAM (default: the last one)."""
    if classifier is None:
        return find_head(model)
    head = get_layer(model, classifier)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"{classifier!r} is a {type(head).__name__}, not a linear layer; use Grad-CAM for this model")
    return classifier, head


@CAM_METHODS.register("cam")
@torch.no_grad()
def cam(
    model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None = None, classifier: str | None = None
) -> torch.Tensor:
    """Plain CAM; checks on the batch that ``logits == linear(GAP(layer))``, else says to use Grad-CAM."""
    classifier, head = linear_head(model, classifier)
    with eval_mode(model):
        logits, output, targets, as_maps = _forward(model, x, layer, targets)
    activations = as_maps(output)
    pooled = activations.mean(dim=(2, 3))
    if pooled.shape[1] != head.in_features or not torch.allclose(
        F.linear(pooled, head.weight, head.bias), logits, rtol=1e-3, atol=1e-3
    ):
        raise ConfigError(
            f"the model's output is not {classifier!r} applied to the global average of {layer!r}, "
            "so plain CAM does not apply; use Grad-CAM"
        )
    weights = head.weight[targets][:, :, None, None]
    return _finish((weights * activations).sum(1), x.shape[-2:])


@CAM_METHODS.register("gradcam")
def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None = None, **_) -> torch.Tensor:
    with eval_mode(model):
        activations, grads = _target_gradients(model, x, layer, targets)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return _finish((weights * activations).sum(1), x.shape[-2:])


@CAM_METHODS.register("gradcam++")
def grad_cam_plus_plus(
    model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None = None, **_
) -> torch.Tensor:
    with eval_mode(model):
        activations, grads = _target_gradients(model, x, layer, targets)
    g2 = grads.pow(2)
    sums = activations.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sums * g2 * grads + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return _finish((weights * activations).sum(1), x.shape[-2:])


@CAM_METHODS.register("layercam")
def layer_cam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None = None, **_) -> torch.Tensor:
    with eval_mode(model):
        activations, grads = _target_gradients(model, x, layer, targets)
    return _finish((grads.clamp(min=0) * activations).sum(1), x.shape[-2:])


@CAM_METHODS.register("scorecam")
@torch.no_grad()
def score_cam(
    model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None = None, batch_size: int = 64, **_
) -> torch.Tensor:
    with eval_mode(model):
        activations, targets = _activations(model, x, layer, targets)
        n, k = activations.shape[:2]
        scores = torch.empty(n, k, device=x.device)
        for i in range(n):
            # Masks are made a chunk at a time (all of them at 224 px would take 0.25 GB per image and 1,280
            # channels), upsampled with aligned corners as pytorch-grad-cam does, scaled to [0, 1] each.
            for start in range(0, k, batch_size):
                masks = F.interpolate(
                    activations[i, start : start + batch_size, None], size=x.shape[-2:], mode="bilinear",
                    align_corners=True,
                )  # fmt: skip
                flat = masks.flatten(1)
                low, high = flat.min(1).values[:, None, None, None], flat.max(1).values[:, None, None, None]
                masks = (masks - low) / (high - low + 1e-8)
                scores[i, start : start + batch_size] = model(masks * x[i])[:, targets[i]]
    weights = scores.softmax(dim=1)[:, :, None, None]
    return _finish((weights * activations).sum(1), x.shape[-2:])


def compute_cam(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    *,
    classifier: str | None = None,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Maps of the registered method ``method``; ``classifier`` names plain CAM's linear head (default: the last
    ``nn.Linear``), which the other methods do not need."""
    return CAM_METHODS[method](model, x, layer, targets, classifier=classifier)
