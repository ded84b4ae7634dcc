"""Training hyper-parameters, typed and validated, and how a training executes (part of no result's identity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlapps.config import NonNegativeFloat, PositiveFloat, PositiveInt, require


@dataclass(frozen=True)
class TrainConfig:
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: PositiveFloat = 1e-3
    momentum: float = 0.9
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"

    def validate(self) -> None:
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        require(self.lr <= 10, f"lr={self.lr:g} is no learning rate a model trains with (at most 10)")


@dataclass(frozen=True)
class Execution:
    """How a training executes, which changes its speed, not what it is: ``compile`` runs the forward passes
    through ``torch.compile`` (None: on CUDA only); ``precision`` is ``fp32``, ``bf16`` (autocast) or ``auto``
    (bf16 where it trains faster than fp32)."""

    compile: bool | None = None
    precision: str = "auto"


AUTO = Execution()  # compiled on CUDA only, bf16 where it is faster
