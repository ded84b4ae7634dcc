"""Markdown for reports: tables, number formats, and report blocks rendered at any heading depth."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def format_number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def with_interval(value: float, interval: dict[str, float] | list[float] | None) -> str:
    """``91.7% (90.0–93.3)``: a fraction in % with its interval (a record with ``low`` and ``high``, or a pair)."""
    if interval is None:
        return f"{percent(value)}%"
    low, high = (interval["low"], interval["high"]) if isinstance(interval, dict) else interval
    return f"{percent(value)}% ({percent(low)}–{percent(high)})"


def bold_best(cells: list[str], higher_better: bool) -> list[str]:
    """Bold the best of a column of formatted numbers, each maybe followed by its interval (all of them when tied
    as displayed); "—" is no number."""
    numbers = [float(c.split()[0]) for c in cells if c != "—"]
    if not numbers:
        return cells
    best = f"{(max if higher_better else min)(numbers):.1f}"
    return [f"**{c}**" if c.split()[0] == best else c for c in cells]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Heading:
    """A section heading; ``level`` 1 is a section of the report, 2 a subsection."""

    text: str
    level: int = 1


@dataclass(frozen=True)
class Image:
    file: str
    caption: str


Block = str | Heading | Image


def render(blocks: Sequence[Block], *, base: int = 1, images: str = "") -> str:
    """Markdown of report blocks: headings ``base`` levels below the top, images linked under ``images/``."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * (base + block.level)} {block.text}")
        elif isinstance(block, Image):
            parts.append(f"![{block.caption}]({images + '/' if images else ''}{block.file})")
        elif block:
            parts.append(block.rstrip("\n"))
    return "\n\n".join(parts) + "\n"
