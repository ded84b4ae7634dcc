"""One registration convention for every kind of plug-in: datasets, models, detectors, attacks, CAM methods,
OOD sets and studies.

Each kind has one :class:`Registry`, and every entry is added the same way, where it is defined: with
``@REGISTRY.register("name", **metadata)`` on the class or function itself. A registry whose entries carry
metadata (a dataset's title, a detector's nothing, a pretrained model's file) says how the thing and its
metadata make the entry it keeps (``entry=``); the others keep the thing itself. Config fields name an entry with
``Annotated[str, REGISTRY]``: the config layer then checks the name against the live registry, so an entry
registered by a user's own module is as valid as a built-in one. The command line imports a user's modules
first (:func:`load_plugins`).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from dlapps.errors import ConfigError, DlappsError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order; an unknown name is a one-line error listing the known.

    ``entry(name, thing, **metadata)`` makes what is kept from what is decorated and its metadata (default: the
    thing itself, which then takes no metadata).
    """

    def __init__(
        self, kind: str, error: type[DlappsError] = ConfigError, entry: Callable[..., T] | None = None
    ) -> None:
        self.kind = kind
        self.error = error  # what an unknown name raises
        self._entry = entry
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False, **metadata: Any) -> Callable[[Any], Any]:
        """A decorator that adds what it decorates under ``name``, with ``metadata``, and returns it unchanged. A
        name is registered once, unless ``replace`` says a plug-in means to replace it (e.g. a mirror's files)."""

        def add(thing: Any) -> Any:
            if name in self._entries and not replace:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self._entry is None and metadata:
                raise TypeError(f"a {self.kind} takes no metadata, got {', '.join(metadata)}")
            self._entries[name] = thing if self._entry is None else self._entry(name, thing, **metadata)
            return thing

        return add

    def __getitem__(self, name: str) -> T:
        self.check(name)
        return self._entries[name]

    def check(self, name: str) -> None:
        """Raise the registry's error naming the known entries unless ``name`` is one of them."""
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of a package, so that a plug-in added as one file registers itself."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


PLUGINS_VAR = "DLAPPS_PLUGINS"


def load_plugins() -> list[str]:
    """Import the user's plug-in modules, so their registrations exist before a command runs: the modules named in
    ``$DLAPPS_PLUGINS`` (comma-separated) and the ``dlapps.plugins`` entry points of installed packages."""
    names = [name.strip() for name in os.environ.get(PLUGINS_VAR, "").split(",") if name.strip()]
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - whatever a user's module raises, say which module it was
            raise DlappsError(f"plug-in module {name!r} (from ${PLUGINS_VAR}) failed to import: {exc}") from None
        loaded.append(name)
    for entry in entry_points(group="dlapps.plugins"):
        entry.load()
        loaded.append(entry.value)
    return loaded
