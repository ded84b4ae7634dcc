"""Training hyper-parameters, typed and validated."""

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
