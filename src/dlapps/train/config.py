"""Training hyper-parameters, typed and validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlapps.config import require


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU

    def validate(self) -> None:
        require(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
