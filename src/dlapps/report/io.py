"""Writing results so that a failed or interrupted run never leaves a half-written or mixed output folder.

Artifacts are written into a staging folder next to the output folder and moved in only when the whole
study has succeeded; each single file is also written to a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


NON_FINITE = "non_finite_as_null"


def finite(payload: Any, where: str = "", replaced: list[str] | None = None) -> Any:
    """``payload`` with every NaN or infinite float as None, so that it is valid (strict) JSON; the path of
    each replaced value (``rows[3].mean_iterations``) is added to ``replaced``."""
    if isinstance(payload, float) and not math.isfinite(payload):
        if replaced is not None:
            replaced.append(f"{where} ({payload})")
        return None
    if isinstance(payload, dict):
        return {key: finite(value, f"{where}.{key}" if where else str(key), replaced) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [finite(value, f"{where}[{i}]", replaced) for i, value in enumerate(payload)]
    return payload


def write_json(path: Path, payload: Any) -> Path:
    """Strict JSON: a value that is not a finite number is written as null, and a dict payload then lists each
    such value under ``non_finite_as_null`` (where it was, and what it was)."""
    replaced: list[str] = []
    clean = finite(payload, replaced=replaced)
    if replaced and isinstance(clean, dict):
        clean[NON_FINITE] = replaced
    return write_text(path, json.dumps(clean, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: Path) -> Any:
    """Strict JSON (NaN and Infinity refused); a malformed file raises ValueError."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def save_figure(figure: Figure, path: Path, dpi: int = 130) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)
    return path


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a fresh staging folder; on success move its files into ``out``, on failure delete it.

    Files already in ``out`` that the study does not write again are left as they are.
    """
    out.mkdir(parents=True, exist_ok=True)
    stage = out / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for source in sorted(stage.rglob("*")):
        if source.is_file():
            target = out / source.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    shutil.rmtree(stage, ignore_errors=True)
