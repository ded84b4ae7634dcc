"""Models trained here, named by what defines them.

A :class:`ClassifierRecipe` (architecture, data, training, objective, seed) is trained once into a folder, in
a checkpoint named by its fingerprint: everything that needs the same model shares it, a changed recipe
trains a new one, and an interrupted training resumes from its last epoch. The checkpoint carries the
model's card, so the file alone is a usable model (:func:`dlapps.models.from_checkpoint`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
from rich.progress import Progress
from torch import nn

from dlapps.config import PositiveInt, fingerprint, require, to_dict
from dlapps.data import DATASET, DATASETS, ImageArrays, ResidentLoader, get_dataset, normalization
from dlapps.data.datasets import split_need
from dlapps.data.downloads import Need
from dlapps.data.resident import CROP_AND_FLIP, PLAIN, Shard
from dlapps.errors import CheckpointError
from dlapps.models import Classifier
from dlapps.models.classifier import build_from_card, check_input
from dlapps.models.factory import anchored
from dlapps.models.layout import inference_batch
from dlapps.models.registry import ARCHITECTURE, architecture_title, check_settings, model_slug
from dlapps.train.checkpoint import load_checkpoint
from dlapps.train.config import AUTO, Execution, TrainConfig
from dlapps.train.device import seed_everything
from dlapps.train.distributed import barrier, current_world, unwrap, wrap
from dlapps.train.trainer import StepLoss, cross_entropy_step, fit


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that defines a model trained here."""

    keywords: ClassVar[dict[str, str]] = {"model": "hparams"}  # model.<key>=<value> is a constructor argument

    model: Annotated[str, ARCHITECTURE]
    hparams: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments, as sorted (key, value) pairs
    dataset: Annotated[str, DATASET] = "cifar10"
    image_size: PositiveInt | None = None  # images resized to this square size (None: as they are)
    train: TrainConfig = field(default_factory=TrainConfig)
    train_subset: PositiveInt | None = None
    test_subset: PositiveInt | None = None
    augment: bool = True  # random crop (4-pixel padding) and horizontal flip
    seed: int = 0
    objective: str = "cross-entropy"  # names the step loss, which is part of what defines the model

    def validate(self) -> None:
        check_settings(self.model, [k for k, _ in self.hparams])

    def key(self) -> str:
        name = Path(self.dataset.removeprefix("torchvision:")).name.removesuffix(".npz")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
        return f"{model_slug(self.model)}-{slug}-{fingerprint(to_dict(self))[:12]}"

    def needs(self, root: Path) -> list[Need]:
        """The splits it trains and is evaluated on, as something the data root must hold."""
        if self.dataset not in DATASETS:
            return []
        found = (split_need(self.dataset, s, root) for s in ("train", DATASETS[self.dataset].eval_split))
        return [need for need in found if need is not None]

    def load_data(self, root: str | Path | None = None, download: bool = False) -> tuple[ImageArrays, ImageArrays]:
        """The training split and the evaluation split of the recipe's dataset."""
        dataset = get_dataset(self.dataset)
        train = dataset.load("train", root, download, size=self.image_size)
        return train, dataset.load(dataset.eval_split, root, download, size=self.image_size)

    def card(self, train: ImageArrays) -> dict[str, Any]:
        """How to rebuild the model: stored in its checkpoint, so the file alone is a usable model."""
        dataset = get_dataset(self.dataset)
        mean, std = normalization(dataset, train)
        return {
            "model": anchored(self.model), "hparams": dict(self.hparams), "num_classes": len(train.classes),
            "in_shape": list(train.image_shape), "mean": list(mean), "std": list(std), "classes": list(train.classes),
            "dataset": self.dataset, "dataset_title": dataset.title,
            "title": architecture_title(self.model, dict(self.hparams)), "image_size": self.image_size,
        }  # fmt: skip


def recipe_loaders(
    recipe: ClassifierRecipe, train: ImageArrays, test: ImageArrays, device: torch.device
) -> tuple[ResidentLoader, ResidentLoader]:
    """Device-resident loaders for a recipe. Under ``torchrun`` each rank gets its shard and
    ``batch_size / world size`` samples per step."""
    world = current_world()
    require(
        recipe.train.batch_size % world.size == 0,
        f"batch_size {recipe.train.batch_size} must be divisible by the {world.size} processes",
    )
    train, test = train.subset(recipe.train_subset), test.subset(recipe.test_subset)
    shard = Shard(world.rank, world.size)
    batch = recipe.train.batch_size // world.size
    transform = CROP_AND_FLIP if recipe.augment else PLAIN
    train_loader = ResidentLoader(train, batch_size=batch, device=device, shuffle=True, seed=recipe.seed,
                                  transform=transform, shard=shard)  # fmt: skip
    test_batch = inference_batch(test.image_shape, device)
    return train_loader, ResidentLoader(test, batch_size=test_batch, device=device, shard=shard)


def initial_model(recipe: ClassifierRecipe, train: ImageArrays, device: torch.device) -> nn.Module:
    """The recipe's model before training, built after seeding with the recipe's seed: the weights its training
    starts from, so an analysis at initialisation sees those very weights."""
    seed_everything(recipe.seed)
    return build_from_card(recipe.card(train)).to(device)


def training_batches(
    recipe: ClassifierRecipe, train: ImageArrays, test: ImageArrays, device: torch.device, count: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` batches its training sees (its loader's first epoch)."""
    loader, _ = recipe_loaders(recipe, train, test, device)
    return [batch for _, batch in zip(range(count), loader, strict=False)]


def checkpoint_path(recipe: ClassifierRecipe, folder: Path) -> Path:
    """Where the recipe's model is trained in ``folder``."""
    return folder / f"{recipe.key()}.safetensors"


def obtain_classifier(
    recipe: ClassifierRecipe,
    folder: Path,
    device: torch.device,
    train: ImageArrays,
    test: ImageArrays,
    *,
    execution: Execution = AUTO,
    progress: Progress | None = None,
    step_loss: StepLoss = cross_entropy_step,
) -> tuple[Classifier, bool]:
    """The recipe's trained model (in eval mode) from ``folder``, trained there first if it is not; and whether
    it was there. ``train`` and ``test``: its dataset's training and evaluation splits
    (:meth:`ClassifierRecipe.load_data`)."""
    card = recipe.card(train)
    model = initial_model(recipe, train, device)
    check_input(Classifier(model, card["title"]), train.image_shape, card["dataset_title"])
    path = checkpoint_path(recipe, folder)
    info = _load_or_set_aside(path, model)
    reused = info is not None and info.get("epoch") == recipe.train.epochs
    if not reused:
        model = initial_model(recipe, train, device)  # fit restores weights and optimizer from a partial checkpoint
        train_loader, test_loader = recipe_loaders(recipe, train, test, device)
        fit(
            wrap(model, device), train_loader, test_loader, recipe.train, seed=recipe.seed, checkpoint=path,
            progress=progress if current_world().is_main else None, run_info=to_dict(recipe), card=card,
            step_loss=step_loss, execution=execution,
        )  # fmt: skip
        barrier()  # rank 0 has written the last checkpoint
        model = unwrap(model)
        info = load_checkpoint(path, model)
    classifier = Classifier(
        model.eval(),
        f"{card['title']} trained here on {card['dataset_title']}",
        tuple(card["classes"]),
        recipe.dataset,
        tuple(card["in_shape"]),
        None,
        {
            "kind": "trained",
            "recipe": recipe.key(),
            "checkpoint": str(path),
            "history": info["history"],
            "precision": info.get("precision", "fp32"),
        },
    )
    return classifier, reused


def _load_or_set_aside(path: Path, model: torch.nn.Module) -> dict[str, Any] | None:
    """The checkpoint's info, or None when there is none; a damaged one is moved to ``<file>.damaged`` (it is a
    cache: the model is trained again) rather than blocking every later run."""
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path, model)
    except CheckpointError:
        os.replace(path, path.with_name(path.name + ".damaged"))
        return None
