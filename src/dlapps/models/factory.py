"""Models built by a user's own code: ``path/to/file.py:factory`` or ``package.module:factory``, any callable
that returns an ``nn.Module``.

The factory is called with the model settings given (``model.<key>=<value>``), plus ``num_classes`` and
``in_shape`` where its signature takes them, so a factory written for dlapps and one written for anything else
both work. Importing the file runs its code: name only files you trust, as with any Python import.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from dlapps.errors import ConfigError, first_line

FACTORY = re.compile(r"(?P<module>.+\.py|[A-Za-z_][\w.]*):(?P<attribute>[A-Za-z_]\w*)")
FILE_MODULE = "dlapps_user_model_"  # the start of the name a model file is imported under


def file_modules() -> list[Any]:
    """The model files imported so far, as modules (which other machines cannot import by name)."""
    return [module for name, module in sys.modules.items() if name.startswith(FILE_MODULE)]


def is_factory_name(name: str) -> bool:
    """Whether ``name`` reads ``file.py:factory`` or ``package.module:factory``."""
    return FACTORY.fullmatch(name) is not None


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def _module(source: str) -> Any:
    if not source.endswith(".py"):
        try:
            return importlib.import_module(source)
        except Exception as exc:  # the user's code may raise anything while it is imported
            raise ConfigError(f"could not import {source} ({_described(exc)})") from None
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"model file {source} does not exist")
    name = f"{FILE_MODULE}{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything while it runs
        del sys.modules[name]
        raise ConfigError(f"could not import {source} ({_described(exc)})") from None
    return module


def anchored(name: str) -> str:
    """``name`` with its file's path made absolute (``nets/my.py:build`` -> ``/home/me/nets/my.py:build``), so a
    checkpoint that names it rebuilds its model from any working folder; other names as they are."""
    match = FACTORY.fullmatch(name)
    if match is None or not match["module"].endswith(".py"):
        return name
    return f"{Path(match['module']).expanduser().resolve()}:{match['attribute']}"


def factory_of(name: str) -> Callable[..., Any]:
    """The callable ``name`` names; a file or module that fails to import, or lacks it, is one line."""
    match = FACTORY.fullmatch(name)
    if match is None:
        raise ConfigError(f"{name!r} is not file.py:factory or package.module:factory")
    module = _module(match["module"])
    factory = getattr(module, match["attribute"], None)
    if not callable(factory):
        raise ConfigError(f"{match['module']} has no callable {match['attribute']!r}")
    return factory


def factory_model(name: str, *, num_classes: int, in_shape: tuple[int, int, int], **settings: Any) -> nn.Module:
    """Call the factory ``name`` for its model: with ``num_classes`` where its signature names it or takes any
    keyword (torchvision's and timm's builders), with ``in_shape`` where it names it."""
    factory = factory_of(name)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a callable without a signature (a builtin): settings only
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {"num_classes": num_classes} if takes_any or "num_classes" in parameters else {}
    given |= {"in_shape": in_shape} if "in_shape" in parameters else {}
    try:
        model = factory(**given, **settings)
    except Exception as exc:  # the user's code may raise anything
        raise ConfigError(f"{name} failed to build the model ({_described(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{name} returned a {type(model).__name__}, not a torch nn.Module")
    return model
