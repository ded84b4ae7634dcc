"""Writing results so that a failed or interrupted run never leaves a half-written or mixed output folder.

Artifacts are written into a staging folder next to the output folder and moved in only when the whole
study has succeeded; each single file (results, reports, figures, checkpoints) is written by
:func:`write_atomically`: to a temporary name, then renamed into place, so a file already there is only ever
replaced by a complete one, and a write that fails (a full disk, a file-size limit, a folder that cannot be
written) is one :class:`~dlapps.errors.OutputError` line.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from safetensors import SafetensorError

from dlapps.errors import OutputError, first_line

_KINDS = {".safetensors": "the checkpoint", ".png": "the figure", ".json": "the results file",
          ".csv": "the results table", ".md": "the report", ".html": "the report"}  # fmt: skip
_STAGING = re.compile(r"\.staging-\d+")


def failure_reason(exc: BaseException) -> str:
    """Why a write failed, in words (``no space left on device``, ``file too large``), from an OSError or from
    safetensors' error, which carries the OS error only in its text (``... File too large (os error 27)``)."""
    code = getattr(exc, "errno", None)
    if code is None:
        found = re.search(r"\(os error (\d+)\)", str(exc))
        code = int(found.group(1)) if found else None
    if code in errno.errorcode:
        return os.strerror(code).lower()
    return first_line(exc)


def write_atomically(path: Path, write: Callable[[Path], object], what: str | None = None) -> Path:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a temporary file beside it (a hidden name that
    does not end like ``path``: say the format when the writer would guess it from the name), which is then
    renamed onto ``path``. When anything fails the temporary file is removed and ``path`` is as it was;
    an OSError or a safetensors error (a full disk, a file-size limit...) becomes one :class:`OutputError` line
    saying what could not be written, where (the final place of a file in a staging folder) and why."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        _remove(tmp)
        shown = Path(*(part for part in path.parts if not _STAGING.fullmatch(part)))
        raise OutputError(
            f"could not write {what or _KINDS.get(path.suffix, 'the file')} {shown} ({failure_reason(exc)}); "
            "what was written before is intact, and a rerun resumes from it"
        ) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def write_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


NON_FINITE = "non_finite_as_null"


def _child(where: str, key: Any) -> str:
    """The path of an item (a dict's key, a list's index) under ``where``: ``rows[3].mean_iterations``."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def finite(payload: Any, where: str = "", replaced: list[str] | None = None) -> Any:
    """``payload`` with every NaN or infinite float as None, so that it is valid (strict) JSON; the path of
    each replaced value (``rows[3].mean_iterations``) is added to ``replaced``."""
    if isinstance(payload, float) and not math.isfinite(payload):
        if replaced is not None:
            replaced.append(f"{where} ({payload})")
        return None
    if isinstance(payload, dict):
        return {key: finite(value, _child(where, str(key)), replaced) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [finite(value, _child(where, i), replaced) for i, value in enumerate(payload)]
    return payload


def json_text(payload: Any) -> str:
    """Strict JSON: a value that is not a finite number is written as null, and a dict payload then lists each
    such value under ``non_finite_as_null`` (where it was, and what it was)."""
    replaced: list[str] = []
    clean = finite(payload, replaced=replaced)
    if replaced and isinstance(clean, dict):
        clean[NON_FINITE] = replaced
    return json.dumps(clean, indent=2, sort_keys=False, allow_nan=False) + "\n"


def with_non_finite(payload: Any) -> Any:
    """A payload read from :func:`json_text`'s JSON with the values listed under ``non_finite_as_null`` back in
    place of their nulls: the payload that was written, but for tuples read as lists."""
    if not isinstance(payload, dict) or NON_FINITE not in payload:
        return payload
    values = dict(entry.rsplit(" (", 1) for entry in payload.pop(NON_FINITE))

    def restored(value: Any, where: str) -> Any:
        if value is None and where in values:
            return float(values[where].removesuffix(")"))
        if isinstance(value, dict):
            return {key: restored(item, _child(where, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [restored(item, _child(where, i)) for i, item in enumerate(value)]
        return value

    return restored(payload, "")


def round_trip(payload: Any) -> Any:
    """What a JSON file of ``payload`` reads back as (:func:`json_text`, then :func:`with_non_finite`)."""
    return with_non_finite(json.loads(json_text(payload)))


def write_json(path: Path, payload: Any) -> Path:
    """``payload`` as strict JSON (:func:`json_text`)."""
    return write_text(path, json_text(payload))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: Path) -> Any:
    """Strict JSON (NaN and Infinity refused); a malformed file raises ValueError."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    if not rows:
        raise ValueError(f"no rows to write to {path}")

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    return write_atomically(path, write)


def save_figure(figure: Figure, path: Path, dpi: int = 130) -> Path:
    kind = path.suffix.removeprefix(".") or "png"
    return write_atomically(path, lambda tmp: figure.savefig(tmp, format=kind, dpi=dpi, bbox_inches="tight"))


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
