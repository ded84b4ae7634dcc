"""A study's files and report (its title, body, comparison with the write-up and the literature, and the
environment it ran in), and the combined report of ``reproduce``; ``study`` is any object with a study's
``title``, ``table``, ``body``, ``compare``, ``no_reference``, ``html`` and ``exercise``."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from dlapps import __version__
from dlapps.report.comparison import Comparison, comparison_table, to_records
from dlapps.report.html import markdown_to_html
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import Block, Heading, render, table

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


def write_study(
    folder: Path, study: Any, config: Any, results: dict[str, Any], rows: list[dict[str, Any]], found: dict[str, Figure]
) -> None:
    """A finished study's files: ``results.json``, ``results.csv`` (``rows``), ``table.md``, the figures and the
    report, staged so that none replaces an old one until all are written."""
    with staged_output(folder) as stage:
        write_json(stage / "results.json", results)
        write_csv(stage / "results.csv", rows)
        write_text(stage / "table.md", study.table(config, results))
        for name, figure in found.items():
            save_figure(figure, stage / name)
        write_report(study, config, results, stage)


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


def exercise_title(study: Any) -> str:
    lab, number, title = study.exercise
    return f"Lab {lab}, exercise{'s' if '–' in number else ''} {number}: {title}"


@dataclass(frozen=True)
class StudyOutcome:
    study: Any  # a registered study
    config: Any
    status: str  # "ran" or "cached"
    seconds: float  # this invocation's (about 0 when cached)
    out: Path
    results: dict[str, Any]
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.study.name


def write_combined_report(out: Path, profile: str, outcomes: list[StudyOutcome]) -> None:
    """``report.md`` and a self-contained ``report.html``: every study's report one heading level down."""
    env = environment()
    rows = [[exercise_title(o.study), f"`{o.name}`", o.status, f"{o.results['wall_seconds']:.0f}"] for o in outcomes]
    parts = []
    for o in outcomes:
        blocks = [
            f"*{o.study.title(o.config, o.results)}*",
            *comparison_blocks(o.study, o.config, o.results, o.comparisons),
            *o.study.body(o.config, o.results),
            Heading("Environment"),
            environment_line(o.results),
        ]
        parts += [f"## {exercise_title(o.study)}", "", render(blocks, base=2, images=o.name)]
    glance = [(o.name, c) for o in outcomes for c in o.comparisons]
    claims = [c for _, c in glance if c.is_claim]
    text = "\n".join(
        [
            f"# dlapps: the deep-learning-applications study, reproduced ({profile} profile)",
            "",
            f"dlapps {env['dlapps']}, torch {env['torch']}, Python {env['python']}, {env['platform']}, "
            f"CUDA: {env['cuda'] or 'none'}; {env['date']}.",
            "",
            f"Rerun everything: `dlapps reproduce --profile {profile} --out {out}`. Each section ends with the "
            "command that reruns its study alone.",
            "",
            table(["exercise", "study", "this run", "study wall time (s)"], rows),
            "## At a glance: this run against the write-up and the literature",
            "",
            f"{sum(c.holds for c in claims)} of {len(claims)} findings hold here. Each section repeats its rows "
            "next to its own tables and figures.",
            "",
            comparison_table([c for _, c in glance], first=("study", [f"`{name}`" for name, _ in glance])),
            *parts,
        ]
    )
    write_text(out / "report.md", text)
    write_text(out / "report.html", markdown_to_html(text, out, title="dlapps reproduction"))
    write_json(out / "summary.json", {"profile": profile, "environment": env, "studies": [
        {"name": o.name, "status": o.status, "seconds": o.seconds, "comparisons": to_records(o.comparisons)}
        for o in outcomes]})  # fmt: skip
