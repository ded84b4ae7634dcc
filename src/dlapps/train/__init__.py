"""Training: config, loop, checkpoints, device choice, and trained models cached by their recipe."""

from dlapps.train.checkpoint import load_checkpoint, save_checkpoint
from dlapps.train.config import TrainConfig
from dlapps.train.device import resolve_device, seed_everything
from dlapps.train.recipes import ClassifierRecipe, obtain_classifier, recipe_loaders
from dlapps.train.trainer import EpochStats, evaluate, fit

__all__ = [
    "ClassifierRecipe",
    "EpochStats",
    "TrainConfig",
    "evaluate",
    "fit",
    "load_checkpoint",
    "obtain_classifier",
    "recipe_loaders",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
