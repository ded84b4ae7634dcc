"""Training: config, loop, checkpoints, device choice, trained models cached by their recipe, and runs trained
side by side or on a Ray cluster."""

from dlapps.train.checkpoint import load_checkpoint, save_checkpoint
from dlapps.train.config import Execution, TrainConfig
from dlapps.train.device import resolve_device, seed_everything
from dlapps.train.recipes import ClassifierRecipe, initial_model, obtain_classifier, recipe_loaders, training_batches
from dlapps.train.side_by_side import Training, train_side_by_side
from dlapps.train.source import ModelSource
from dlapps.train.trainer import EpochStats, evaluate, fit

__all__ = [
    "ClassifierRecipe",
    "EpochStats",
    "Execution",
    "ModelSource",
    "TrainConfig",
    "Training",
    "evaluate",
    "fit",
    "initial_model",
    "load_checkpoint",
    "obtain_classifier",
    "recipe_loaders",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "train_side_by_side",
    "training_batches",
]
