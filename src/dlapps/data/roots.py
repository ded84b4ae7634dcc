"""Where datasets live (``--data-root``, else ``$DLAPPS_DATA``, else a per-user cache folder), and the small
per-user cache of what dlapps measured about a dataset once."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from dlapps.errors import DataError

ENV_VAR = "DLAPPS_DATA"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlapps"


def default_cache_root() -> Path:
    return cache_dir() / "data"


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root a user asked for, by precedence: explicit argument, environment, cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_cache_root()


def check_data_root(root: Path) -> None:
    """One :class:`DataError` line when the data root is there but is no folder (a file, say). A root that does
    not exist yet is no error here: a download creates it, and what is missing from it is named elsewhere."""
    if root.exists() and not root.is_dir():
        what = "a file, not a folder" if root.is_file() else "not a folder"
        raise DataError(
            f"the data root {root} is {what}; point --data-root or $DLAPPS_DATA at the folder that holds the datasets"
        )


Stats = tuple[tuple[float, ...], tuple[float, ...]]


def stats_cache(source: str, size: int, compute: Callable[[], Stats]) -> Stats:
    """Per-channel (mean, std) of the data read from ``source`` (``size`` images): measured once, then read
    from ``<cache>/dlapps/stats.json``. A source that is a file or folder is keyed with its modification time,
    so changed data is measured again. A cache that cannot be read or written is only a cache: it is skipped.
    """
    path = Path(source.split(",")[0])
    stamp = path.stat().st_mtime_ns if path.exists() else None
    key = json.dumps([source, size, stamp])
    file = cache_dir() / "stats.json"
    try:
        known = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and key in known:
        mean, std = known[key]
        return tuple(mean), tuple(std)
    mean, std = compute()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".stats.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps({**(known if isinstance(known, dict) else {}), key: [mean, std]}), encoding="utf-8")
        os.replace(tmp, file)
    except OSError:
        pass
    return mean, std
