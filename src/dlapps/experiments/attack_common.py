"""What the attack studies share: the model they attack, ε in 1/255 units, and cached attack runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from rich.progress import Progress
from torch import nn

from dlapps.attacks import attack_arrays, cumulative_success, summarize
from dlapps.config import require
from dlapps.data import ImageArrays
from dlapps.experiments.base import RunCache, RunContext
from dlapps.experiments.zoo import ClassifierRecipe, obtain_classifier
from dlapps.models import PRETRAINED, load_pretrained
from dlapps.train import TrainConfig

PIXEL = 1 / 255  # studies state ε and step sizes in grey levels, as papers do


@dataclass(frozen=True)
class VictimConfig:
    """The attacked CIFAR-10 model: the shared pretrained ResNet-20, or the course's small CNN trained here."""

    name: Literal["resnet20", "small_cnn"] = "resnet20"
    epochs: int = 20  # small_cnn only
    train_subset: int | None = None  # small_cnn only; None: all 50,000 training images

    def validate(self) -> None:
        require(self.epochs > 0, f"victim.epochs must be positive, got {self.epochs}")
        require(
            self.train_subset is None or self.train_subset > 0,
            f"victim.train_subset must be positive or none, got {self.train_subset}",
        )

    def recipe(self) -> ClassifierRecipe:
        return ClassifierRecipe(
            model="small_cnn",
            train=TrainConfig(epochs=self.epochs, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
            train_subset=self.train_subset,
        )


def load_victim(config: VictimConfig, ctx: RunContext, progress: Progress | None = None) -> tuple[nn.Module, dict]:
    """The model in eval mode on the run's device, and what identifies it (for caches and reports)."""
    if config.name == "resnet20":
        spec = PRETRAINED["resnet20_cifar10"]
        model = load_pretrained("resnet20_cifar10", ctx.data_root, ctx.download).to(ctx.device)
        return model, {"name": "pretrained ResNet-20", "weights": spec.filename, "reference": spec.accuracy}
    recipe = config.recipe()
    model, info = obtain_classifier(recipe, ctx, progress=progress)
    test_acc = info["history"][-1]["test_acc"]
    return model, {
        "name": "small CNN trained here",
        "recipe": recipe.key(),
        "reference": f"{test_acc:.2%} test accuracy",
    }


def eps_label(value: float) -> str:
    """``8`` -> ``"8/255"`` for ε given in grey levels."""
    return f"{value:g}/255"


def cached_attack(
    cache: RunCache,
    name: str,
    model: nn.Module,
    victim: dict[str, Any],
    data: ImageArrays,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    progress: Progress,
    **attack_kwargs: Any,
) -> dict[str, Any]:
    """Attack ``data`` once per distinct setting; the record holds the summary and the timing.

    The cache key names everything the attack depends on: the victim (as :func:`load_victim` describes it),
    the data, the seed of its random starts and targets, and the attack's arguments.
    """
    settings = {
        "victim": victim,
        "data": {"source": data.source, "n": len(data), "seed": seed},
        "steps": steps,
        **attack_kwargs,
    }
    key = cache.key(name, settings)
    record = cache.get(key)
    if record is not None:
        return record
    task = progress.add_task(name, total=len(data))
    started = time.perf_counter()
    result = attack_arrays(
        model,
        data,
        batch_size=batch_size,
        steps=steps,
        on_done=lambda n: progress.advance(task, n),
        generator=torch.Generator().manual_seed(seed),
        **attack_kwargs,
    )
    seconds = time.perf_counter() - started
    progress.remove_task(task)
    record = {
        "key": key,
        **summarize(result),
        "cumulative_success": cumulative_success(result, steps),
        "seconds": seconds,
        "images_per_second": len(data) / seconds,
    }
    cache.put(key, record)
    return record
