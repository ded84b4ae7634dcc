"""A study's report: its title, body, comparison with the write-up and the literature, and the environment it ran
in; ``study`` is any object with a study's ``title``, ``body``, ``compare``, ``no_reference`` and ``html``."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from dlapps import __version__
from dlapps.report.comparison import Comparison, comparison_table
from dlapps.report.html import markdown_to_html
from dlapps.report.io import write_text
from dlapps.report.markdown import Block, Heading, render

COMPARISON_TITLE = "Against the write-up and the literature"


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


def write_report(study: Any, config: Any, results: dict[str, Any], folder: Path) -> None:
    """``report.md`` (and ``report.html``) from ``results``, in the folder that holds the study's figures."""
    text = write_text(folder / "report.md", study_report(study, config, results)).read_text(encoding="utf-8")
    if study.html:
        write_text(folder / "report.html", markdown_to_html(text, folder, title=study.title(config, results)))


def comparison_blocks(study: Any, config: Any, results: dict[str, Any], rows: list[Comparison]) -> list[Block]:
    if rows:
        note = "Numbers: ours minus theirs in the Δ columns. Claims: whether this run shows them, with the evidence."
        return [Heading(COMPARISON_TITLE), note, comparison_table(rows)]
    reason = study.no_reference(config)
    return [Heading(COMPARISON_TITLE), f"No published figure applies to this run: {reason}"] if reason else []


def environment_line(results: dict[str, Any]) -> str:
    env = results["environment"]
    cached = f"; {results['cached_runs']} finished run(s) reused" if results.get("cached_runs") else ""
    line = (
        f"dlapps {env['dlapps']}, torch {env['torch']}, Python {env['python']}, device {env['device']} "
        f"({env['cpu_threads']} CPU threads), training in {env.get('training_precision', 'fp32')}, {env['date']}; "
        f"wall time {results['wall_seconds']:.0f} s{cached}."
    )
    return line + (f"\n\nRerun: `{results['command']}`" if results.get("command") else "")


def study_report(study: Any, config: Any, results: dict[str, Any], *, base: int = 1, images: str = "") -> str:
    """The study's report: its title at ``base`` heading depth, body, comparisons and environment."""
    blocks = [
        *study.body(config, results),
        *comparison_blocks(study, config, results, study.compare(config, results)),
        Heading("Environment"),
        environment_line(results),
    ]
    return f"{'#' * base} {study.title(config, results)}\n\n" + render(blocks, base=base, images=images)
