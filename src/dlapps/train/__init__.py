"""Training: config, loop, checkpoints, device choice."""

from dlapps.train.checkpoint import load_checkpoint, save_checkpoint
from dlapps.train.config import TrainConfig
from dlapps.train.device import resolve_device, seed_everything
from dlapps.train.trainer import EpochStats, evaluate, fit

__all__ = [
    "EpochStats",
    "TrainConfig",
    "evaluate",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
