"""What every study shares: its registry entry, run context, profiles and the run cache."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dlapps import __version__
from dlapps.config import apply_overrides, fingerprint, to_dict
from dlapps.errors import ConfigError
from dlapps.report.comparison import Comparison
from dlapps.report.io import read_json, write_json


@dataclass(frozen=True)
class RunContext:
    """Where and how a study runs; studies own all their I/O through this."""

    out: Path
    device: torch.device
    data_root: Path | None = None
    models_dir: Path | None = None  # trained models shared between studies; default: "models" beside <out>
    download: bool = False
    show_progress: bool = True
    command: str = ""
    shared_progress: Progress | None = None  # an outer display (``reproduce``) that studies add their bars to
    compile: bool | None = None  # torch.compile training; None: on CUDA only (not part of any result's identity)

    @property
    def model_dir(self) -> Path:
        return self.models_dir or self.out.parent / "models"

    def progress(self) -> AbstractContextManager[Progress]:
        """A progress display to use as a context manager: the shared one if any, else a new one."""
        if self.shared_progress is not None:
            return nullcontext(self.shared_progress)
        return make_progress(self.show_progress)


def make_progress(enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def no_comparisons(config: Any, results: dict[str, Any]) -> list[Comparison]:
    return []


@dataclass(frozen=True)
class Study:
    name: str
    summary: str
    default_config: Callable[[], Any]
    profiles: dict[str, dict[str, Any]]
    run: Callable[[Any, RunContext], dict[str, Any]]
    # (config, results.json content) -> rows beside the write-up and literature; pure, so that a combined
    # report can rebuild them from finished results.
    compare: Callable[[Any, dict[str, Any]], list[Comparison]] = no_comparisons
    default_profile: str = "quick"

    def config(self, profile: str | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Any:
        """The default config, then the profile's overrides, then the user's; validated."""
        profile = profile or self.default_profile
        if profile not in self.profiles:
            raise ConfigError(f"unknown profile {profile!r} for {self.name}; profiles: {', '.join(self.profiles)}")
        config = apply_overrides(self.default_config(), self.profiles[profile])
        return apply_overrides(config, overrides or [])


def environment() -> dict[str, Any]:
    return {
        "dlapps": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def study_results(study: str, config: Any, ctx: RunContext, started: float, **fields: Any) -> dict[str, Any]:
    """A study's ``results.json`` content: what ran (its config), where, ``fields``, how long, how to rerun."""
    return {
        "study": study,
        "config": to_dict(config),
        "environment": {**environment(), "device": str(ctx.device)},
        **fields,
        "wall_seconds": time.perf_counter() - started,
        "command": ctx.command,
    }


def environment_section(results: dict[str, Any], reused: str = "") -> list[str]:
    """A study report's closing lines: versions, device, wall time and the command that reruns it."""
    env = results["environment"]
    return [
        "## Environment",
        "",
        f"dlapps {env['dlapps']}, torch {env['torch']}, Python {env['python']}, device {env['device']} "
        f"({env['cpu_threads']} CPU threads), {env['date']}; wall time {results['wall_seconds']:.0f} s"
        + (f" ({reused})" if reused else "")
        + ".",
        "",
        f"Rerun: `{results['command']}`" if results["command"] else "",
        "",
    ]


@dataclass
class RunCache:
    """Finished runs of a study, one JSON file each, keyed by a fingerprint of everything that made them.

    A rerun skips what is done; a changed setting changes the key, so stale results are never reused.
    """

    folder: Path
    hits: int = field(default=0)

    def key(self, name: str, settings: dict[str, Any]) -> str:
        return f"{name}-{fingerprint(settings)[:10]}"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        self.hits += 1
        return read_json(path)

    def put(self, key: str, record: dict[str, Any]) -> None:
        write_json(self.folder / f"{key}.json", record)
