"""Trained classifiers shared between studies: each is trained once and cached by everything defining it.

A :class:`ClassifierRecipe` names a model, its hyper-parameters, the data and the training; its fingerprint
names the checkpoint in the run context's model folder, so the OOD and attack studies reuse the same CIFAR
model, a changed recipe trains a new one, and an interrupted training resumes from its last epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.progress import Progress
from torch import nn

from dlapps.config import fingerprint, require, to_dict
from dlapps.data import DATASETS, ImageArrays, ResidentLoader, get_spec, load_arrays
from dlapps.experiments.base import RunContext
from dlapps.models import create_model, list_models
from dlapps.train import TrainConfig, fit, load_checkpoint, seed_everything
from dlapps.train.distributed import barrier, current_world, unwrap, wrap
from dlapps.train.trainer import StepLoss, cross_entropy_step


@dataclass(frozen=True)
class ClassifierRecipe:
    model: str
    hparams: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments, as sorted (key, value) pairs
    dataset: str = "cifar10"
    train: TrainConfig = field(default_factory=TrainConfig)
    train_subset: int | None = None
    test_subset: int | None = None
    augment: bool = True  # random crop (4-pixel padding) and horizontal flip
    seed: int = 0
    objective: str = "cross-entropy"  # names the step loss, which is part of what defines the model

    def validate(self) -> None:
        require(self.model in list_models(), f"unknown model {self.model!r}; known models: {', '.join(list_models())}")
        require(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            require(value is None or value > 0, f"{key} must be positive or none, got {value}")

    def key(self) -> str:
        return f"{self.model}-{self.dataset}-{fingerprint(to_dict(self))[:12]}"

    def build(self) -> nn.Module:
        spec = get_spec(self.dataset)
        return create_model(
            self.model,
            num_classes=spec.num_classes,
            in_shape=spec.image_shape,
            mean=spec.mean,
            std=spec.std,
            **dict(self.hparams),
        )


def recipe_loaders(
    recipe: ClassifierRecipe, ctx: RunContext, train: ImageArrays | None = None, test: ImageArrays | None = None
) -> tuple[ResidentLoader, ResidentLoader]:
    """Device-resident loaders for a recipe (pass already-loaded splits to avoid reading them again).

    Under ``torchrun`` each rank gets its shard and ``batch_size / world size`` samples per step.
    """
    world = current_world()
    require(
        recipe.train.batch_size % world.size == 0,
        f"batch_size {recipe.train.batch_size} must be divisible by the {world.size} processes",
    )
    train = train or load_arrays(recipe.dataset, "train", ctx.data_root, ctx.download)
    test = test or load_arrays(recipe.dataset, "test", ctx.data_root, ctx.download)
    train, test = train.subset(recipe.train_subset), test.subset(recipe.test_subset)
    shard = {"rank": world.rank, "world_size": world.size, "device": ctx.device}
    augment = {"crop_padding": 4, "hflip": True} if recipe.augment else {}
    batch = recipe.train.batch_size // world.size
    train_loader = ResidentLoader(train, batch_size=batch, shuffle=True, seed=recipe.seed, **shard, **augment)
    return train_loader, ResidentLoader(test, batch_size=1000, **shard)


def obtain_classifier(
    recipe: ClassifierRecipe,
    ctx: RunContext,
    *,
    progress: Progress | None = None,
    step_loss: StepLoss = cross_entropy_step,
    train: ImageArrays | None = None,
    test: ImageArrays | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The recipe's trained model (in eval mode) and its training info; trains it only if not cached."""
    seed_everything(recipe.seed)
    model = recipe.build().to(ctx.device)
    path = ctx.model_dir / f"{recipe.key()}.safetensors"
    if path.is_file():
        info = load_checkpoint(path, model)
        if info.get("epoch") == recipe.train.epochs:
            return model.eval(), info
        seed_everything(recipe.seed)
        model = recipe.build().to(ctx.device)  # fit restores weights and optimizer from the checkpoint
    train_loader, test_loader = recipe_loaders(recipe, ctx, train, test)
    fit(
        wrap(model, ctx.device),
        train_loader,
        test_loader,
        recipe.train,
        seed=recipe.seed,
        checkpoint=path,
        progress=progress if current_world().is_main else None,
        run_info=to_dict(recipe),
        step_loss=step_loss,
        compile=ctx.compile,
    )
    barrier()  # rank 0 has written the last checkpoint
    return unwrap(model).eval(), load_checkpoint(path, model)
