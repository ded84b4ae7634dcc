"""Runs of one setup repeated over seeds, as records (a run's fields, its final numbers and its ``history`` of
epochs): the values, curves and summary of each setup, named by a *cell* (the fields that define it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dlapps.report.markdown import mean_std


def seed_values(records: Sequence[Mapping[str, Any]], key: str, cell: Mapping[str, Any]) -> list[Any]:
    """``key`` of each record of the cell."""
    return [r[key] for r in records if all(r[k] == v for k, v in cell.items())]


def seed_curves(records: Sequence[Mapping[str, Any]], key: str, cell: Mapping[str, Any]) -> list[list[float]]:
    """``key`` per epoch of each record of the cell: the curves :func:`~dlapps.report.figures.curves_grid` draws."""
    return [[h[key] for h in history] for history in seed_values(records, "history", cell)]


def over_seeds(records: Sequence[dict], cells: Iterable[dict], value: str = "test_acc") -> list[dict]:
    """Per cell, the mean, std and count of ``value`` over its records."""
    rows = []
    for cell in cells:
        values = seed_values(records, value, cell)
        mean, std = mean_std(values)
        rows.append({**cell, f"mean_{value}": mean, f"std_{value}": std, "seeds": len(values)})
    return rows


def series(rows: Sequence[Mapping[str, Any]], x: str, cell: Mapping[str, Any], value: str = "test_acc") -> tuple:
    """``(x, mean, std)`` of the :func:`over_seeds` rows of the cell: a line of
    :func:`~dlapps.report.figures.mean_std_lines`."""
    return tuple(seed_values(rows, key, cell) for key in (x, f"mean_{value}", f"std_{value}"))
