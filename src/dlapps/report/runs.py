"""A run's output folder: the check that it can be written, the lock that keeps a second run out of it, and
the cache of finished runs inside it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlapps.config import fingerprint
from dlapps.errors import DlappsError
from dlapps.report.io import read_json, round_trip, with_non_finite, write_json


def cache_key(name: str, settings: dict[str, Any]) -> str:
    """The key of the run ``name`` with these ``settings``: a fingerprint of everything that made it."""
    return f"{name}-{fingerprint(settings)[:10]}"


@dataclass
class RunCache:
    """Finished runs of a study, one JSON file each, keyed by a fingerprint of everything that made them.

    A rerun skips what is done; a changed setting changes the key, so stale results are never reused.
    """

    folder: Path
    hits: int = field(default=0)  # records found that this process did not write
    written: set[str] = field(default_factory=set)  # keys of the records this process wrote

    def key(self, name: str, settings: dict[str, Any]) -> str:
        return cache_key(name, settings)

    def has(self, key: str) -> bool:
        return (self.folder / f"{key}.json").is_file()

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``; None when there is none, or when it is damaged (it is then set aside as
        ``<key>.json.damaged`` and the run is done again: a cache is never a reason to fail)."""
        record = self._read(key)
        self.hits += record is not None and key not in self.written
        return record

    def records(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every readable record whose key starts with ``prefix``, by key (not counted as hits)."""
        found = {path.stem: self._read(path.stem) for path in sorted(self.folder.glob(f"{prefix}*.json"))}
        return {key: record for key, record in found.items() if record is not None}

    def _read(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            record = with_non_finite(read_json(path))
        except (ValueError, OSError):
            record = None
        if not isinstance(record, dict):
            os.replace(path, path.with_name(path.name + ".damaged"))
            return None
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        write_json(self.folder / f"{key}.json", record)
        self.written.add(key)

    def get_or_compute(
        self, name: str, settings: dict[str, Any], compute: Callable[[str], dict[str, Any]]
    ) -> dict[str, Any]:
        """The record of the run ``name`` with these ``settings``: the cached one, else ``compute(key)``'s as its
        file reads back (tuples as lists, string keys), cached: a run gets the very record a rerun finds."""
        key = self.key(name, settings)
        record = self.get(key)
        if record is None:
            record = round_trip(compute(key))
            self.put(key, record)
        return record


@dataclass
class RelayedCache:
    """A :class:`RunCache` where its folder is not at hand (a task on another machine): the records known
    beforehand, and each new one handed to ``keep``, which sends it to where the folder is."""

    known: dict[str, dict[str, Any]]
    keep: Callable[[str, dict[str, Any]], None]

    def get_or_compute(
        self, name: str, settings: dict[str, Any], compute: Callable[[str], dict[str, Any]]
    ) -> dict[str, Any]:
        key = cache_key(name, settings)
        if key not in self.known:
            self.known[key] = round_trip(compute(key))  # as a RunCache reads it back
            self.keep(key, self.known[key])
        return self.known[key]


def check_output_folder(out: Path) -> None:
    """Fail before any work, with one line, when results could not be written to ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DlappsError(
            f"cannot write results to {out} ({exc.strerror or exc}); choose another folder (--out, --models-dir)"
        ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>/.lock`` (the owner's pid) while a run writes there: a second run on the same folder is refused
    while the first is alive, and takes over the lock a killed run left behind."""
    lock = out / ".lock"
    for _ in range(2):
        try:
            with open(lock, "x", encoding="ascii") as handle:
                handle.write(str(os.getpid()))
            break
        except FileExistsError:
            try:
                owner = int(lock.read_text(encoding="ascii") or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _alive(owner):
                raise DlappsError(
                    f"another dlapps run (pid {owner}) is writing to {out}; wait for it to finish, or choose another --out"
                ) from None
            lock.unlink(missing_ok=True)  # left by a run that was killed: take it over
    else:
        raise DlappsError(f"cannot take the lock {lock}; another run keeps taking it")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
