"""Memory layout: channels-last weights wherever the convolutions run faster that way, and inference batches
that keep a CPU's activations in its caches.

oneDNN (CPU) and cuDNN run 2-D convolutions on channels-last tensors faster than on contiguous ones. On the
2-core Xeon of benchmarks/RESULTS.md, in fp32: the small CNN trains 1.4x faster, ResNet-20 1.15x; inference
runs 2-2.6x faster and input gradients (attacks, CAMs) 1.2-1.7x. The exception is oneDNN's multithreaded
channels-last batch-norm backward for fewer channels than an AVX-512 register holds floats (16): on two
threads a ResNet of widths 8-16-32 trains 0.7-1.05x as fast, so such a model keeps the contiguous layout on
a CPU with several threads. On one thread (runs trained side by side) channels-last pays for it too: 1.2x
(14 layers) and 1.3-1.5x (32 layers). The inputs need no conversion: a convolution with channels-last
weights computes channels-last.

Inference (evaluation, OOD scores, attacks, CAMs) on a CPU runs fastest in batches of about 128 images of
32×32 pixels: on the same Xeon, at 2 threads, the small CNN scores 2.5x as many images per second in batches
of 128 as in batches of 1,000 and ResNet-20 1.9x (input gradients: 1.8x and 1.1x); a narrow ResNet-32 gains
little (benchmarks/RESULTS.md). Larger batches spill the activations out of the caches. A GPU wants large
batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NARROWEST_FAST_BATCH_NORM = 16  # channels, on the CPU
CPU_INFERENCE_VALUES = 128 * 3 * 32 * 32  # input values per inference batch: 128 CIFAR images
GPU_INFERENCE_VALUES = 1024 * 3 * 32 * 32


def channels_last_pays(model: nn.Module, device: torch.device) -> bool:
    """Whether ``model`` runs faster with channels-last weights on ``device`` (it has 2-D convolutions; on a
    CPU with several threads, none of its 2-D batch norms is narrower than :data:`NARROWEST_FAST_BATCH_NORM`)."""
    modules = list(model.modules())
    if device.type not in ("cpu", "cuda") or not any(isinstance(m, nn.Conv2d) for m in modules):
        return False
    return (
        device.type == "cuda"
        or torch.get_num_threads() == 1
        or all(m.num_features >= NARROWEST_FAST_BATCH_NORM for m in modules if isinstance(m, nn.BatchNorm2d))
    )


def fast_layout(model: nn.Module, device: torch.device) -> nn.Module:
    """Give ``model`` (already on ``device``) the faster of the two layouts, in place; return it."""
    fast = channels_last_pays(model, device)
    return model.to(memory_format=torch.channels_last if fast else torch.contiguous_format)


def inference_batch(image_shape: tuple[int, ...], device: torch.device | str) -> int:
    """How many images of ``image_shape`` (C, H, W) to pass through a model at once on ``device`` when only
    speed decides. On a CPU: 128 CIFAR images, as many times fewer as an image holds more values, but 8 where
    that is fewer and 8 images hold at most 16 times as many values (a deep network's per-batch overhead
    shows under 8: MobileNetV2 at 224 pixels runs best at 8-16); at least one. On a GPU: 1,024 CIFAR images."""
    per_image = math.prod(image_shape)
    if torch.device(device).type != "cpu":
        return max(1, GPU_INFERENCE_VALUES // per_image)
    return max(CPU_INFERENCE_VALUES // per_image, min(8, 16 * CPU_INFERENCE_VALUES // per_image), 1)
