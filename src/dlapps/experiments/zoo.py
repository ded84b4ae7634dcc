"""The classifiers studies analyse: a :class:`ModelSpec` names one, :func:`obtain_model` makes it.

A model is a published checkpoint by name, a registered (or torchvision) architecture trained here on the
study's dataset, the same architecture with a user's weights file, or a checkpoint written by dlapps. Models
trained here are described by a :class:`ClassifierRecipe`, whose fingerprint names the checkpoint in the
run context's model folder: studies that need the same model share it, a changed recipe trains a new one,
and an interrupted training resumes from its last epoch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from rich.progress import Progress

from dlapps.config import fingerprint, require, to_dict
from dlapps.data import DATASET, Dataset, ImageArrays, ResidentLoader, get_dataset, normalization
from dlapps.data.datasets import looks_like_path
from dlapps.errors import CheckpointError, ConfigError, DataError
from dlapps.experiments.base import RunContext
from dlapps.models import MODELS, PRETRAINED, Classifier, check_input, from_checkpoint, from_pretrained, from_weights
from dlapps.models.classifier import build_from_card, checkpoint_card
from dlapps.models.registry import TORCHVISION, torchvision_architectures
from dlapps.train import TrainConfig, fit, load_checkpoint, seed_everything
from dlapps.train.distributed import barrier, current_world, unwrap, wrap
from dlapps.train.trainer import StepLoss, cross_entropy_step

TITLES = {"small_cnn": "small CNN", "mlp": "MLP", "residual_mlp": "ResidualMLP", "mobilenet_v2": "MobileNetV2"}


def architecture_title(name: str, hparams: dict[str, Any] | None = None) -> str:
    """``resnet20`` -> ``ResNet-20``, ``cifar_resnet`` with 5 blocks -> ``ResNet-32``, ``small_cnn`` -> ``small CNN``."""
    hparams = hparams or {}
    if name == "cifar_resnet":
        return f"{'ResNet' if hparams.get('skip', True) else 'Plain'}-{6 * hparams.get('blocks', 3) + 2}"
    if match := re.fullmatch(r"resnet(\d+)", name):
        return f"ResNet-{match.group(1)}"
    return TITLES.get(name, name.removeprefix(TORCHVISION))


class ArchitectureNames:
    """Config checker: a registered architecture or ``torchvision:<arch>``."""

    @staticmethod
    def check(name: str) -> None:
        if name.startswith(TORCHVISION):
            arch = name.removeprefix(TORCHVISION)
            if arch not in torchvision_architectures():
                raise ConfigError(f"unknown torchvision architecture {arch!r}; see torchvision.models.list_models()")
        else:
            MODELS.check(name)


ARCHITECTURE = ArchitectureNames()


class ModelNames:
    """Config checker: a published checkpoint, an architecture, or the path of a weights file."""

    @staticmethod
    def check(name: str) -> None:
        if name in PRETRAINED or name in MODELS:
            return
        if name.startswith(TORCHVISION):
            ARCHITECTURE.check(name)
        elif looks_like_path(name) or Path(name).suffix in (".safetensors", ".th", ".pt", ".pth"):
            if not Path(name).expanduser().is_file():
                raise CheckpointError(f"model file {name} does not exist")
        else:
            raise ConfigError(
                f"unknown model {name!r}; published: {', '.join(PRETRAINED)}; architectures: {', '.join(MODELS)}; "
                "or torchvision:<arch>, or the path of a checkpoint written by dlapps"
            )


MODEL = ModelNames()


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that defines a model trained here."""

    model: Annotated[str, ARCHITECTURE]
    hparams: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments, as sorted (key, value) pairs
    dataset: Annotated[str, DATASET] = "cifar10"
    image_size: int | None = None  # images resized to this square size (None: as they are)
    train: TrainConfig = field(default_factory=TrainConfig)
    train_subset: int | None = None
    test_subset: int | None = None
    augment: bool = True  # random crop (4-pixel padding) and horizontal flip
    seed: int = 0
    objective: str = "cross-entropy"  # names the step loss, which is part of what defines the model

    def validate(self) -> None:
        for key in ("train_subset", "test_subset", "image_size"):
            value = getattr(self, key)
            require(value is None or value > 0, f"{key} must be positive or none, got {value}")

    def key(self) -> str:
        name = Path(self.dataset.removeprefix("torchvision:")).name.removesuffix(".npz")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
        return f"{self.model.removeprefix(TORCHVISION)}-{slug}-{fingerprint(to_dict(self))[:12]}"

    def load_data(self, ctx: RunContext) -> tuple[ImageArrays, ImageArrays]:
        """The training split and the evaluation split of the recipe's dataset."""
        dataset = get_dataset(self.dataset)
        train = dataset.load("train", ctx.data_root, ctx.download, size=self.image_size)
        return train, dataset.load(dataset.eval_split, ctx.data_root, ctx.download, size=self.image_size)

    def card(self, train: ImageArrays) -> dict[str, Any]:
        """How to rebuild the model: stored in its checkpoint, so the file alone is a usable model."""
        dataset = get_dataset(self.dataset)
        mean, std = normalization(dataset, train)
        return {
            "model": self.model, "hparams": dict(self.hparams), "num_classes": len(train.classes),
            "in_shape": list(train.image_shape), "mean": list(mean), "std": list(std), "classes": list(train.classes),
            "dataset": self.dataset, "dataset_title": dataset.title,
            "title": architecture_title(self.model, dict(self.hparams)), "image_size": self.image_size,
        }  # fmt: skip


def recipe_loaders(
    recipe: ClassifierRecipe, ctx: RunContext, train: ImageArrays, test: ImageArrays
) -> tuple[ResidentLoader, ResidentLoader]:
    """Device-resident loaders for a recipe. Under ``torchrun`` each rank gets its shard and
    ``batch_size / world size`` samples per step."""
    world = current_world()
    require(
        recipe.train.batch_size % world.size == 0,
        f"batch_size {recipe.train.batch_size} must be divisible by the {world.size} processes",
    )
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
) -> Classifier:
    """The recipe's trained model (in eval mode); trained only if not cached. Pass the dataset's training and
    evaluation splits when already loaded."""
    if train is None or test is None:
        train, test = recipe.load_data(ctx)
    card = recipe.card(train)
    seed_everything(recipe.seed)
    model = build_from_card(card).to(ctx.device)
    path = ctx.model_dir / f"{recipe.key()}.safetensors"
    info = load_checkpoint(path, model) if path.is_file() else None
    if info is not None and info.get("epoch") == recipe.train.epochs:
        ctx.cache.hits += 1
    else:
        seed_everything(recipe.seed)
        model = build_from_card(card).to(ctx.device)  # fit restores weights and optimizer from a partial checkpoint
        train_loader, test_loader = recipe_loaders(recipe, ctx, train, test)
        fit(
            wrap(model, ctx.device), train_loader, test_loader, recipe.train, seed=recipe.seed, checkpoint=path,
            progress=progress if current_world().is_main else None, run_info=to_dict(recipe), card=card,
            step_loss=step_loss, compile=ctx.compile,
        )  # fmt: skip
        barrier()  # rank 0 has written the last checkpoint
        model = unwrap(model)
        info = load_checkpoint(path, model)
    return Classifier(
        model.eval(),
        f"{card['title']} trained here on {card['dataset_title']}",
        tuple(card["classes"]),
        recipe.dataset,
        tuple(card["in_shape"]),
        None,
        {"kind": "trained", "recipe": recipe.key(), "checkpoint": str(path), "history": info["history"]},
    )


@dataclass(frozen=True)
class ModelSpec:
    """The classifier a study analyses, named by ``name``:

    - a published checkpoint (``resnet20_cifar10``, ``mobilenet_v2_imagenet``, ...), ``weights`` optionally
      a file of the same layout;
    - an architecture (``small_cnn``, ``resnet20``, ``torchvision:resnet18``, ...): with ``weights``, a user's
      checkpoint of it; without, trained here on the study's dataset with ``train``;
    - the path of a checkpoint written by dlapps (``dlapps train``), which says all the rest itself.

    ``mean``/``std`` are the normalisation a user's weights expect (default: the dataset's; ImageNet's for a
    torchvision architecture); ``class_map`` the model output of each dataset class, for a model with more
    outputs than the dataset has classes (found by itself for ImageNet models on ImageNet WordNet-id folders).
    """

    shorthand: ClassVar[str] = "name"

    name: Annotated[str, MODEL] = "resnet20_cifar10"
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_map: tuple[int, ...] | None = None
    train: TrainConfig = field(default_factory=TrainConfig)  # when trained here
    train_subset: int | None = None  # when trained here: training images (None: all)
    augment: bool = True  # when trained here: random crop and flip
    seed: int = 0  # when trained here

    def validate(self) -> None:
        require(
            self.weights is None or self.kind != "checkpoint",
            f"{self.name} is a checkpoint file; weights go with an architecture name",
        )
        require(
            self.weights is None or Path(self.weights).expanduser().is_file(),
            f"weights file {self.weights} does not exist",
        )
        require((self.mean is None) == (self.std is None), "give mean and std together")
        if self.mean is not None and self.std is not None:
            require(len(self.mean) == len(self.std), "mean and std must have one value per channel")
            require(all(s > 0 for s in self.std), f"std must be positive, got {self.std}")
        require(self.train_subset is None or self.train_subset > 0, "train_subset must be positive or none")

    @property
    def kind(self) -> str:
        """``pretrained``, ``checkpoint``, ``weights`` (an architecture and a file) or ``train`` (trained here)."""
        if self.name in PRETRAINED:
            return "pretrained"
        if self.name not in MODELS and not self.name.startswith(TORCHVISION):
            return "checkpoint"
        return "weights" if self.weights else "train"

    @property
    def is_published(self) -> bool:
        """The published checkpoint itself (the one reference numbers are about), not a file in its place."""
        return self.kind == "pretrained" and self.weights is None

    def input_size(self) -> int | None:
        """The square input size the model was made for, where its name or file says (None: not fixed)."""
        if self.kind == "pretrained":
            return PRETRAINED[self.name].in_shape[-1]
        card = checkpoint_card(Path(self.name).expanduser()) if self.kind == "checkpoint" else None
        return card["in_shape"][-1] if card else None

    def image_size(self, dataset: Dataset, asked: int | None) -> int | None:
        """The size to read ``dataset``'s images at: as asked, else the model's for a dataset of varying sizes."""
        return asked or (self.input_size() if dataset.image_shape is None else None)

    def recipe(self, dataset: str, image_size: int | None, test_subset: int | None = None, **hparams: Any):
        return ClassifierRecipe(
            self.name, tuple(sorted(hparams.items())), dataset, image_size, self.train, self.train_subset,
            test_subset, self.augment, self.seed,
        )  # fmt: skip


def obtain_model(
    spec: ModelSpec,
    dataset: Dataset,
    data: ImageArrays,
    ctx: RunContext,
    *,
    image_size: int | None = None,
    progress: Progress | None = None,
    test_subset: int | None = None,
    splits: tuple[ImageArrays, ImageArrays] | None = None,
) -> Classifier:
    """The classifier ``spec`` names, on the run's device, for ``dataset`` (``data``: its evaluation split).

    A model trained here trains on ``splits`` (the whole training and evaluation splits), else loads them.
    """
    kind = spec.kind
    if kind == "pretrained":
        classifier = from_pretrained(spec.name, ctx.data_root, ctx.download, spec.weights)
    elif kind == "checkpoint":
        classifier = from_checkpoint(Path(spec.name).expanduser())
    elif kind == "weights":
        mean, std = spec.mean, spec.std
        if mean is None and not spec.name.startswith(TORCHVISION):
            mean, std = normalization(dataset, data)
        classifier = from_weights(
            spec.name, Path(spec.weights).expanduser(), num_classes=len(data.classes), in_shape=data.image_shape,
            mean=mean, std=std,
        )  # fmt: skip
    else:
        recipe = spec.recipe(dataset.name, image_size, test_subset)
        train, test = splits or (None, None)
        classifier = obtain_classifier(recipe, ctx, progress=progress, train=train, test=test)
    return classifier.to(ctx.device)


def align(classifier: Classifier, dataset: Dataset, data: ImageArrays, class_map: tuple[int, ...] | None = None):
    """``data`` with its labels as the classifier's outputs, after checking that the model takes its images.

    The labels stay as they are when the model has one output per class; else they go through ``class_map``,
    or the label space both share (Imagenette's classes among ImageNet's outputs).
    """
    check_input(classifier, data.image_shape, dataset.title)
    outputs = classifier.num_outputs
    names = classifier.classes or tuple(str(i) for i in range(outputs))
    if class_map is not None:
        if len(class_map) != len(data.classes) or not all(0 <= c < outputs for c in class_map):
            raise DataError(
                f"model.class_map must give one output (0..{outputs - 1}) for each of the {len(data.classes)} "
                f"classes of {dataset.title}, got {len(class_map)} values"
            )
        return data.relabel(class_map, names)
    if outputs == len(data.classes):
        return data
    space = dataset.label_spaces.get(classifier.trained_on or "")
    if space is not None:
        return data.relabel(space, names)
    shown = ", ".join(data.classes[:4]) + (", ..." if len(data.classes) > 4 else "")
    raise DataError(
        f"{classifier.title} has {outputs} outputs but {dataset.title} has {len(data.classes)} classes ({shown}); "
        "set model.class_map to the output of each class, or use a model trained on this dataset"
    )


def describe(classifier: Classifier) -> dict[str, Any]:
    """What identifies a classifier in results and cache keys: its title, where it came from, and what it is
    known to score (its published accuracy, or its final test accuracy when trained here)."""
    info = {k: v for k, v in classifier.info.items() if k != "history"}
    history = classifier.info.get("history")
    reference = info.get("published") or (f"{history[-1]['test_acc']:.2%} test accuracy" if history else "")
    return {"title": classifier.title, **info, "reference": reference}
