"""The classifier a study analyses, and how it is trained here when it is an architecture named without weights:
:class:`ModelSpec`, a :class:`~dlapps.models.spec.ClassifierSpec` that makes a
:class:`~dlapps.train.ClassifierRecipe` (trained in the run's shared model folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlapps.config import PositiveInt
from dlapps.models.spec import ClassifierSpec
from dlapps.train.config import TrainConfig
from dlapps.train.recipes import ClassifierRecipe


@dataclass(frozen=True)
class ModelSpec(ClassifierSpec):
    """A :class:`~dlapps.models.spec.ClassifierSpec` and, for an architecture named without weights, how it is
    trained here on the study's dataset."""

    train: TrainConfig = field(default_factory=TrainConfig)  # when trained here
    train_subset: PositiveInt | None = None  # when trained here: training images (None: all)
    augment: bool = True  # when trained here: random crop and flip
    seed: int = 0  # when trained here

    def recipe(self, dataset: str, image_size: int | None, test_subset: int | None = None, **hparams: Any):
        """The recipe that trains it here; ``hparams`` complete (and override) its own settings."""
        settings = dict(self.hparams) | hparams
        return ClassifierRecipe(
            self.name, tuple(sorted(settings.items())), dataset, image_size, self.train, self.train_subset,
            test_subset, self.augment, self.seed,
        )  # fmt: skip
