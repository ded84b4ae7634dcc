"""What every benchmark records beside its numbers: the hardware, versions and date."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dlapps.data import load_arrays
from dlapps.models import load_pretrained
from dlapps.models.layout import fast_layout


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    model = names[0] if names else platform.processor() or "unknown CPU"
    return f"{model}, {len(names) or '?'} logical cores, {torch.get_num_threads()} torch threads"


def write_result(name: str, device: torch.device, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json with the hardware, torch version and date in front of ``payload``."""
    record = {"benchmark": name, "device": hardware(device), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), **payload}  # fmt: skip
    out = Path(__file__).parent / "results" / f"{name}-{device.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return out


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def resnet20_and_images(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The shared ResNet-20 in the layout every study runs it in, and ``args.images`` CIFAR-10 test images in [0, 1]
    with their labels, on ``args.device`` (with ``args.threads`` CPU threads)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = fast_layout(load_pretrained("resnet20_cifar10").to(device), device)
    data = load_arrays("cifar10", "test").subset(args.images)
    return model, (data.images.float() / 255).to(device), data.labels.to(device)


def timed(device: torch.device | str, run: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``run(*args, **kwargs)`` and the seconds it took (the device synchronised before and after)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = run(*args, **kwargs)
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - started
