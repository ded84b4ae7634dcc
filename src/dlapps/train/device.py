"""Device choice and seeding for runs."""

from __future__ import annotations

import random

import numpy as np
import torch

from dlapps.errors import ConfigError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit name must be usable here."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} asked for, but MPS is not available here")
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively, as PyTorch sees it: CUDA GPUs from Ampere on, CPUs whose
    oneDNN has bf16 kernels (AVX-512 BF16, AMX). Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 training is faster than fp32 on ``device``: where it is native on CUDA, and on CPUs with
    AMX tiles. AVX-512 BF16 alone is not enough: ResNet-20 trains at 0.87x the fp32 speed on such a Xeon
    (benchmarks/RESULTS.md), against 2.1x with AMX."""
    return native_bf16(device) and (device.type != "cpu" or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where it trains faster than fp32 (:func:`fast_bf16`), else ``fp32``; others as
    they are."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for reproducible initialisation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
