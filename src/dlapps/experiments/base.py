"""The study skeleton: a study is its config, its run and its report body; :func:`run_study` does the rest.

:func:`run_study` checks the output folder, runs the study, wraps what it returns in the standard envelope
(``results.json``: config, environment, wall time, the command that reruns it) and writes ``results.json``,
``results.csv``, ``table.md``, the figures and ``report.md`` (title, body, the comparison with the write-up
and the literature, environment) into a staging folder that replaces nothing until all of it is written.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from matplotlib.figure import Figure
from rich.progress import Progress

from dlapps.config import PositiveInt, apply_overrides, named_by, nested, to_dict
from dlapps.data import DATASET, DATASETS, ImageArrays, get_dataset, resolve_data_root
from dlapps.data.datasets import split_need
from dlapps.data.downloads import Need, ensure
from dlapps.data.ood import OOD_SET, ood_set_needs
from dlapps.data.sources import preload_archives
from dlapps.errors import ConfigError
from dlapps.models.pretrained import weights_need
from dlapps.registry import Registry
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Block
from dlapps.report.progress import make_progress
from dlapps.report.runs import RunCache, check_output_folder, output_lock
from dlapps.report.study import environment, write_study
from dlapps.train import ModelSource
from dlapps.train.device import resolve_precision
from dlapps.train.model_spec import ModelSpec


@dataclass(kw_only=True)
class RunContext(ModelSource):
    """Where and how a study runs; studies own all their I/O through this: the models it analyses (from its
    :class:`ModelSource`), its output folder and the cache of its finished runs, its progress display."""

    out: Path
    models_dir: Path | None = None  # trained models shared between studies; None: "models" beside <out>
    show_progress: bool = True
    command: str = ""
    shared_progress: Progress | None = None  # an outer display (``reproduce``) that studies add their bars to
    cache: RunCache = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.models_dir = self.models_dir or self.out.parent / "models"
        self.cache = RunCache(self.out / "runs")

    def progress(self) -> AbstractContextManager[Progress]:
        """A progress display to use as a context manager: the shared one if any, else a new one."""
        if self.shared_progress is not None:
            return nullcontext(self.shared_progress)
        return make_progress(self.show_progress)


@dataclass(frozen=True)
class OnDataset:
    """The settings every study on a dataset shares; study configs extend it (and may change the default)."""

    dataset: Annotated[str, DATASET] = "cifar10"
    image_size: PositiveInt | None = None  # images resized to this square size (None: as they are)

    def load(
        self, ctx: RunContext, split: str | None = None, *, model_size: int | None = None, **kwargs: Any
    ) -> ImageArrays:
        """A split (default: the evaluation split) of the dataset at the configured size, else, for a dataset of
        varying image sizes, at ``model_size`` (the input size of the model to analyse, where it has one)."""
        dataset = get_dataset(self.dataset)
        size = self.image_size or (model_size if dataset.image_shape is None else None)
        return dataset.load(split or dataset.eval_split, ctx.data_root, ctx.download, size=size, **kwargs)

    def is_dataset(self, name: str) -> bool:
        """Whether this is the registered dataset ``name`` as it is (a reference setup, not resized)."""
        return self.dataset == name and self.image_size is None


@dataclass
class StudyOutput:
    """What a study's run hands to the skeleton."""

    results: dict[str, Any]  # the study's own fields of results.json (JSON-ready)
    rows: list[dict[str, Any]]  # results.csv
    figures: dict[str, Figure] = field(default_factory=dict)  # PNG file name -> figure


class Study:
    """One study: subclasses set the class attributes and implement ``run``, ``title``, ``table`` and ``body``.

    ``title``, ``table``, ``body`` and ``compare`` read only the config and the ``results.json`` content, so
    a report (alone, or in ``reproduce``'s combined one) can be rebuilt from finished results.
    """

    name: str  # as registered
    summary: ClassVar[str]
    config_type: ClassVar[type]
    profiles: ClassVar[dict[str, dict[str, Any]]]
    default_profile: ClassVar[str] = "quick"
    exercise: ClassVar[tuple[int, str, str] | None] = None  # (lab, number, title) of the write-up, for reproduce
    html: ClassVar[bool] = False  # also write a self-contained report.html
    reads_training_split: ClassVar[bool] = True  # trains or fits something on its dataset's training split

    def config(self, profile: str | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Any:
        """The default config, then the profile's overrides, then the user's; validated."""
        profile = profile or self.default_profile
        if profile not in self.profiles:
            raise ConfigError(f"unknown profile {profile!r} for {self.name}; profiles: {', '.join(self.profiles)}")
        config = apply_overrides(self.config_type(), self.profiles[profile])
        return apply_overrides(config, overrides or [])

    def needs(self, config: Any, root: Path, download: bool = False) -> list[Need]:
        """What a run reads from the data root, checked (or fetched) before it starts: the evaluation split of
        each dataset the config names (and its training split where the study trains or fits on it, or a model
        is trained here), each published model's weights, and each OOD set's data. ``download``: whether what is
        missing will be fetched, for a study that reads something else when it will not."""
        specs = [v for v in nested(config) if isinstance(v, ModelSpec)]
        train = self.reads_training_split or any(s.kind == "train" for s in specs)
        found = [split_need(name, split, root) for name in named_by(config, DATASET) if name in DATASETS
                 for split in (("train",) if train else ()) + (DATASETS[name].eval_split,)]  # fmt: skip
        found += [weights_need(s.name, root) for s in specs if s.is_published]
        ood_sets = named_by(config, OOD_SET) + self.default_ood_sets(config)
        found += [need for name in ood_sets for need in ood_set_needs(name, root)]
        return [need for need in found if need is not None]

    def default_ood_sets(self, config: Any) -> list[str]:
        """The OOD sets a run chooses for its data where the config names none."""
        return []

    def run(self, config: Any, ctx: RunContext) -> StudyOutput:
        raise NotImplementedError

    def title(self, config: Any, results: dict[str, Any]) -> str:
        raise NotImplementedError

    def table(self, config: Any, results: dict[str, Any]) -> str:
        """The main table, written as ``table.md`` (the body usually shows it too)."""
        raise NotImplementedError

    def body(self, config: Any, results: dict[str, Any]) -> list[Block]:
        raise NotImplementedError

    def compare(self, config: Any, results: dict[str, Any]) -> list[Comparison]:
        """Rows beside the write-up and the literature, only where this run's setup is theirs."""
        return []

    def no_reference(self, config: Any) -> str | None:
        """Why no published figure applies to this setup (None: the reference setup, or no reference exists)."""
        return None


def _study_entry(name: str, cls: type[Study]) -> Study:
    """The one instance of a registered study class, named as it was registered."""
    study = cls()
    study.name = name
    return study


# ``@STUDIES.register(name)`` on a Study subclass.
STUDIES: Registry[Study] = Registry("study", entry=_study_entry)


def run_study(study: Study, config: Any, ctx: RunContext) -> dict[str, Any]:
    """Run ``study`` and write its standard files into ``ctx.out``; return the ``results.json`` content."""
    for folder in (ctx.out, ctx.models_dir):
        check_output_folder(folder)
    root = resolve_data_root(ctx.data_root)
    needs = study.needs(config, root, ctx.download)
    ensure(needs, root, ctx.download, progress=ctx.show_progress)
    preload_archives(path for need in needs for path in need.paths)
    with output_lock(ctx.out):
        return _run_and_write(study, config, ctx)


def _run_and_write(study: Study, config: Any, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    output = study.run(config, ctx)
    results = {
        "study": study.name,
        "config": to_dict(config),
        "environment": {
            **environment(),
            "device": str(ctx.device),
            "training_precision": resolve_precision(ctx.precision, ctx.device),
        },  # fmt: skip
        **output.results,
        "cached_runs": ctx.cache.hits + ctx.reused,
        "wall_seconds": time.perf_counter() - started,
        "command": ctx.command,
    }
    write_study(ctx.out, study, config, results, output.rows, output.figures)
    return results
