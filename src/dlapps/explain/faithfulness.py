"""How faithful a saliency map is to the model: does keeping/removing what it highlights move the score?

Inputs are images in [0, 1] and maps in [0, 1] of the same height and width; the target of each image is
the class the model predicts on the unmodified image. "Removing" a pixel blends it towards a neutral
``baseline`` image — by default the model's normalisation mean (what a zero in normalised space is, so
masking here equals masking a normalised input as torchcam does), else black.

- Average drop (Chattopadhay et al. 2018): mean over images of ``relu(p - o) / p``, with ``p`` the target's
  probability on the image and ``o`` on the image masked by its map (``baseline + map * (x - baseline)``).
  Lower is better.
- Increase in confidence: the fraction of images with ``o > p``. Higher is better.
- Deletion / insertion AUC (Petsiuk et al. 2018): pixels are removed (set to the baseline) or inserted
  (into a blurred copy) in order of decreasing saliency over ``steps`` equal steps; the AUC is the trapezoid
  mean of the target probability over the fraction of pixels. Deletion: lower is better; insertion: higher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from dlapps.explain.cam import compute_cam
from dlapps.models.hooks import eval_mode
from dlapps.models.layers import Normalize


def neutral_baseline(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's normalisation mean as an image (N, C, 1, 1), or black if it does not normalise."""
    normalize = getattr(model, "normalize", None)
    if isinstance(normalize, Normalize) and normalize.enabled:
        return normalize.mean.to(x.device).expand(x.shape[0], -1, 1, 1)
    return torch.zeros(x.shape[0], x.shape[1], 1, 1, device=x.device)


def _probabilities(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = [
        model(chunk).softmax(dim=1).gather(1, t[:, None]).squeeze(1)
        for chunk, t in zip(x.split(batch_size), targets.split(batch_size), strict=True)
    ]
    return torch.cat(out)


@dataclass(frozen=True)
class Confidence:
    original: torch.Tensor  # (N,) target probability on the image
    masked: torch.Tensor  # (N,) on the image masked by its map

    @property
    def average_drop(self) -> float:
        return float(((self.original - self.masked).clamp(min=0) / self.original).mean())

    @property
    def increase_in_confidence(self) -> float:
        return float((self.masked > self.original).float().mean())


@torch.no_grad()
def masked_confidence(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, batch_size: int = 64
) -> Confidence:
    baseline = neutral_baseline(model, x)
    with eval_mode(model):
        original = _probabilities(model, x, targets, batch_size)
        masked = _probabilities(model, baseline + maps[:, None] * (x - baseline), targets, batch_size)
    return Confidence(original, masked)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 16,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image deletion and insertion AUCs, each (N,)."""
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    n, _, h, w = x.shape
    baseline = neutral_baseline(model, x)
    blurred = TF.gaussian_blur(x, kernel_size=[2 * (h // 16) + 1] * 2, sigma=[h / 16.0] * 2)
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=x.device).expand(n, -1))
    rank = rank.view(n, 1, h, w)
    fractions = torch.linspace(0, 1, steps + 1)
    deletion, insertion = torch.empty(n, steps + 1), torch.empty(n, steps + 1)
    with eval_mode(model):
        for s, fraction in enumerate(fractions):
            chosen = rank < round(float(fraction) * h * w)
            deletion[:, s] = _probabilities(model, torch.where(chosen, baseline, x), targets, batch_size).cpu()
            insertion[:, s] = _probabilities(model, torch.where(chosen, x, blurred), targets, batch_size).cpu()
    return torch.trapezoid(deletion, fractions, dim=1), torch.trapezoid(insertion, fractions, dim=1)


def batched_maps(
    method: str, model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """The maps of ``method`` for ``targets``, ``batch_size`` images at a time."""
    chunks = zip(x.split(batch_size), targets.split(batch_size), strict=True)
    return torch.cat([compute_cam(method, model, xb, layer, targets=tb) for xb, tb in chunks])


def faithfulness(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    targets: torch.Tensor,
    *,
    deletion_images: int,
    deletion_steps: int = 16,
    batch_size: int = 64,
) -> dict[str, float | int | str]:
    """How faithful the maps of ``method`` are on ``x`` for ``targets`` (usually the predicted classes): average
    drop and increase in confidence on every image, deletion / insertion AUC on the first ``deletion_images``."""
    maps = batched_maps(method, model, x, layer, targets, batch_size)
    confidence = masked_confidence(model, x, maps, targets, batch_size=batch_size)
    n = min(len(x), deletion_images)
    deletion, insertion = deletion_insertion(model, x[:n], maps[:n], targets[:n], steps=deletion_steps,
                                             batch_size=batch_size)  # fmt: skip
    return {"method": method, "images": len(x), "average_drop": confidence.average_drop,
            "increase_in_confidence": confidence.increase_in_confidence, "deletion_images": n,
            "deletion_auc": float(deletion.mean()), "insertion_auc": float(insertion.mean())}  # fmt: skip
