"""What every benchmark records beside its numbers: the hardware, versions and date."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch


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
