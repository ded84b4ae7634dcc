"""Where a run's classifiers come from: published or given weights, or a folder of models trained here, shared
between runs (each trained there once: several side by side where that is sooner, or on a Ray cluster)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from dlapps.data import Dataset, ImageArrays
from dlapps.errors import ConfigError
from dlapps.models import Classifier
from dlapps.models.spec import load_classifier
from dlapps.train.config import Execution
from dlapps.train.device import resolve_precision
from dlapps.train.model_spec import ModelSpec
from dlapps.train.ray_cluster import connect, train_on_ray
from dlapps.train.recipes import ClassifierRecipe, obtain_classifier
from dlapps.train.side_by_side import Training, check_workers, default_workers, train_side_by_side
from dlapps.train.trainer import cross_entropy_step

EXECUTORS = ("local", "ray")  # where the runs of a study train: on this host, or as tasks on a Ray cluster


@dataclass(kw_only=True)
class ModelSource:
    """Classifiers on ``device``; how and where they train (compile, precision, workers, executor) is part of no
    result's identity. It keeps what it finds out: how many models it found trained (``reused``) and which
    workers (forked, or Ray's) trained."""

    models_dir: Path  # the models trained here
    device: torch.device
    data_root: Path | None = None
    download: bool = False
    compile: bool | None = None  # torch.compile training; None: on CUDA only
    precision: str = "auto"  # training: fp32, bf16 or auto (bf16 where native)
    workers: int | None = None  # runs trained side by side; None: one per core on a CPU where that is faster
    executor: str = "local"  # one of EXECUTORS
    ray_address: str | None = None  # the Ray cluster: auto, host:port or ray://host:port; None: one started here
    trained: set[str] = field(default_factory=set)  # keys of the models this command trained (shared by replace)
    found: set[str] = field(init=False)  # keys of the models found in the folder that this command did not train
    trained_by_workers: set[str] = field(init=False)  # keys of the models workers trained

    def __post_init__(self) -> None:
        resolve_precision(self.precision, self.device)  # bad values fail here, before any work
        if self.workers is not None:
            check_workers(self.workers, self.device)
            if self.compile and self.workers > 1:
                raise ConfigError(f"{self.workers} workers asked for with compile: compiled runs train one at a time")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; use {' or '.join(EXECUTORS)}")
        if self.executor == "ray":
            if self.workers is not None:
                raise ConfigError("workers are for the local executor: Ray trains as many runs at once as it has CPUs")
            connect(self.ray_address, self.device)
        elif self.ray_address is not None:
            raise ConfigError(f"a Ray address ({self.ray_address}) is for the ray executor, not {self.executor}")
        self.found = set()
        self.trained_by_workers = set()

    @property
    def reused(self) -> int:
        """How many models it found trained in the folder, not by this command."""
        return len(self.found)

    @property
    def training_workers(self) -> int:
        return default_workers(self.device) if self.workers is None else self.workers

    def classifier(
        self,
        model: ModelSpec | ClassifierRecipe,
        data: ImageArrays | None = None,
        *,
        dataset: Dataset | None = None,
        image_size: int | None = None,
        test_subset: int | None = None,
        train: ImageArrays | None = None,
        test: ImageArrays | None = None,
        **training: Any,
    ) -> Classifier:
        """The classifier a :class:`ModelSpec` names, for ``dataset`` (``data``: its evaluation split), or the
        model of a recipe, on the device: published or given weights are loaded; a model trained here comes
        from the model folder, trained there first when it is not (else counted as reused), on its dataset's
        ``train`` and ``test`` splits (read when not given; as a task on the cluster under the ray executor).
        ``training``: keyword arguments of :func:`~dlapps.train.obtain_classifier` (``progress``, ``step_loss``)."""
        if isinstance(model, ModelSpec) and model.kind != "train":
            return load_classifier(model, dataset, data, self.data_root, self.download).to(self.device)
        recipe = model.recipe(dataset.name, image_size, test_subset) if isinstance(model, ModelSpec) else model
        if train is None or test is None:
            train, test = recipe.load_data(self.data_root, self.download)
        if self.executor == "ray":  # a task on the cluster too, as the runs of a study's plan are
            run = Training(recipe.key(), recipe, training.get("step_loss", cross_entropy_step))
            self.train_in_workers([run], train, test, training.get("progress"))
        execution = Execution(self.compile, self.precision)
        classifier, reused = obtain_classifier(
            recipe, self.models_dir, self.device, train, test, execution=execution, **training
        )
        (self.found if reused and recipe.key() not in self.trained else self.trained).add(recipe.key())
        # A model to analyse goes to the layout that runs fastest; a recipe's stays as it was trained.
        return classifier.to(self.device) if isinstance(model, ModelSpec) else classifier

    def train_in_workers(
        self, runs: list[Training], train: ImageArrays, test: ImageArrays, progress: Progress | None
    ) -> None:
        """Train the runs that are not in the model folder yet in workers: as tasks on the Ray cluster, or side by
        side where that is how they train soonest (:mod:`dlapps.train.side_by_side`); :meth:`classifier` then
        finds them there."""
        if self.executor == "ray":
            trained = train_on_ray(
                runs, self.models_dir, device=self.device, train=train, test=test,
                execution=Execution(self.compile, self.precision), progress=progress,
            )  # fmt: skip
        elif self.compile:  # compiled runs train one at a time (forked workers cannot compile)
            return
        else:
            trained = train_side_by_side(
                runs, self.models_dir, workers=self.training_workers, train=train, test=test,
                precision=self.precision, progress=progress, only_if_faster=self.workers is None,
            )  # fmt: skip
        self.trained_by_workers.update(trained)
        self.trained.update(trained)

    def trained_runs(
        self, plan: list[tuple[str, dict[str, Any], ClassifierRecipe]], train: ImageArrays, test: ImageArrays,
        progress: Progress, title: str = "runs",
    ) -> tuple[list[dict[str, Any]], dict[str, Classifier]]:  # fmt: skip
        """Each recipe of ``plan`` (label, the run's own fields, recipe), trained or found in the model folder,
        under one progress bar: a record per run (its fields, the model's key and size, final accuracies,
        seconds, history) and the models by label."""
        records, models = [], {}
        overall = progress.add_task(title, total=len(plan))
        self.train_in_workers([Training(label, recipe) for label, _, recipe in plan], train, test, progress)
        for label, fields, recipe in plan:
            progress.update(overall, description=label)
            started = time.perf_counter()
            models[label] = model = self.classifier(recipe, progress=progress, train=train, test=test)
            history = model.info["history"]
            records.append({
                **fields, "key": recipe.key(), "parameters": model.parameter_count,
                "test_acc": history[-1]["test_acc"], "train_acc": history[-1]["train_acc"],
                "train_seconds": sum(h["seconds"] for h in history), "seconds": time.perf_counter() - started,
                "history": history,
            })  # fmt: skip
            progress.console.print(f"{label}: test acc {records[-1]['test_acc']:.4f}")
            progress.advance(overall)
        return records, models
