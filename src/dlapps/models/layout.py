"""Memory layout: channels-last weights wherever the convolutions run faster that way.

oneDNN (CPU) and cuDNN run 2-D convolutions on channels-last tensors faster than on contiguous ones. On the
2-core Xeon of benchmarks/RESULTS.md, in fp32: the small CNN trains 1.4x faster, ResNet-20 1.15x; inference
runs 2-2.6x faster and input gradients (attacks, CAMs) 1.2-1.7x. The exception is oneDNN's multithreaded
channels-last batch-norm backward for fewer channels than an AVX-512 register holds floats (16): on two
threads a ResNet of widths 8-16-32 trains 0.7-1.05x as fast, so such a model keeps the contiguous layout on
a CPU with several threads. On one thread (runs trained side by side) channels-last pays for it too: 1.2x
(14 layers) and 1.3-1.5x (32 layers). The inputs need no conversion: a convolution with channels-last
weights computes channels-last.
"""

from __future__ import annotations

import torch
from torch import nn

NARROWEST_FAST_BATCH_NORM = 16  # channels, on the CPU


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
