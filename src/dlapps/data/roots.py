"""Where datasets live: ``--data-root``, else ``$DLAPPS_DATA``, else a per-user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DLAPPS_DATA"


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlapps" / "data"


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root a user asked for, by precedence: explicit argument, environment, cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_cache_root()
