"""Typed, validated experiment configs built from dataclasses.

A config is a frozen dataclass whose ``validate`` method raises :class:`ConfigError` naming the bad key.
Overrides come as ``key=value`` strings (``--set`` on the CLI) and are parsed by the field's type, so
``--set depths=2,8`` and ``--set lr=1e-3`` both work and ``--set dpeths=2`` is an error that names the key.
A field annotated ``Annotated[str, checker]`` (a :class:`~dlapps.registry.Registry`, or anything with a
``check(value)`` method) accepts only values the checker accepts. A nested config that names a
``shorthand`` field can be set as a whole: ``--set model=small_cnn`` sets ``model.name``. A config whose
``keywords`` maps a prefix to a field of (key, value) pairs collects free keyword arguments there:
``--set model.img_size=32`` adds ``("img_size", 32)`` (values read as JSON where they parse, else as text).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from dlapps.errors import ConfigError, DlappsError

C = TypeVar("C")

_NONE_WORDS = {"none", "null", ""}
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def _checkers(annotation: Any) -> tuple[Any, list[Any]]:
    """The type inside ``Annotated[type, ...]`` and its metadata that can check a value."""
    if typing.get_origin(annotation) is typing.Annotated:
        return annotation.__origin__, [m for m in annotation.__metadata__ if hasattr(m, "check")]
    return annotation, []


def _parse(text: str, annotation: Any, key: str) -> Any:
    annotation, _ = _checkers(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE_WORDS:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union type for {key}: {annotation}")
        return _parse(text, inner[0], key)
    if origin is tuple and typing.get_origin(args[0]) is tuple:  # (key, value) pairs, given as a JSON object
        try:
            pairs = json.loads(text)
        except ValueError:
            pairs = None
        if not isinstance(pairs, dict):
            raise ConfigError(f"{key} takes a JSON object, e.g. {key}='{{\"width\": 32}}', got {text!r}")
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in pairs.items()))
    if origin is tuple:
        item_type = args[0]
        parts = [p for p in text.split(",") if p.strip()]
        return tuple(_parse(p.strip(), item_type, key) for p in parts)
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"{key}={text!r} is not one of {', '.join(map(str, args))}")
        return text
    if annotation is bool:
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ConfigError(f"{key}={text!r} is not a boolean (use true/false)")
    if annotation in (int, float, str):
        try:
            value = annotation(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not a valid {annotation.__name__}") from None
        if annotation is float and not math.isfinite(value):
            raise ConfigError(f"{key}={text!r} is not a finite number")
        return value
    raise TypeError(f"unsupported config type for {key}: {annotation}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def config_keys(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every settable key (nested dataclasses as ``outer.inner``) with its current value."""
    keys: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            keys.update(config_keys(value, f"{prefix}{field.name}."))
        else:
            keys[f"{prefix}{field.name}"] = value
    return keys


def nested(config: Any) -> Iterator[Any]:
    """Every config nested in ``config``, depth first."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            yield value
            yield from nested(value)


def named_by(config: Any, checker: Any) -> list[Any]:
    """Every value in ``config`` (nested configs too) of a field annotated with ``checker``, items of tuples
    one by one: e.g. every dataset name a config holds."""
    found: list[Any] = []
    for name, annotation in _field_types(type(config)).items():
        value = getattr(config, name)
        if dataclasses.is_dataclass(value):
            found += named_by(value, checker)
            continue
        inner, checks = _checkers(annotation)
        if typing.get_origin(inner) in (typing.Union, types.UnionType):  # X | None
            inner, checks = _checkers(next(a for a in typing.get_args(inner) if a is not type(None)))
        if typing.get_origin(inner) is tuple and isinstance(value, tuple):
            checks = _checkers(typing.get_args(inner)[0])[1]
            found += [item for item in value if checker in checks]
        elif checker in checks and value is not None:
            found.append(value)
    return found


def _keyword_value(raw: Any, key: str) -> Any:
    """A free keyword argument's value: JSON where the text parses (lists become tuples), else the text."""
    if not isinstance(raw, str):
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, dict):
        raise ConfigError(f"{key} takes a number, a text, true/false or a list, not a mapping")
    return tuple(value) if isinstance(value, list) else value


def _free_keyword(config: Any, path: list[str], fields: dict[str, Any]) -> tuple[str, str] | None:
    """The (pairs field, key) that ``path`` sets as a free keyword argument, if the config collects it."""
    keywords = getattr(type(config), "keywords", {})
    if len(path) == 1 and path[0] not in fields and "" in keywords:
        return keywords[""], path[0]
    if len(path) == 2 and path[0] in keywords and not dataclasses.is_dataclass(getattr(config, path[0], None)):
        return keywords[path[0]], path[1]
    return None


def _set(config: C, path: list[str], raw: Any, full_key: str) -> C:
    types_by_name = _field_types(type(config))
    free = _free_keyword(config, path, types_by_name)
    if free is not None:
        pairs_field, key = free
        pairs = dict(getattr(config, pairs_field)) | {key: _keyword_value(raw, full_key)}
        return dataclasses.replace(config, **{pairs_field: tuple(sorted(pairs.items()))})
    name = path[0]
    if name not in types_by_name:
        raise KeyError(full_key)
    current = getattr(config, name)
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            shorthand = getattr(current, "shorthand", None)
            if shorthand is None:
                raise KeyError(full_key)
            path = [name, shorthand]
        return dataclasses.replace(config, **{name: _set(current, path[1:], raw, full_key)})
    if len(path) > 1:
        raise KeyError(full_key)
    value = _parse(raw, types_by_name[name], full_key) if isinstance(raw, str) else raw
    return dataclasses.replace(config, **{name: value})


def apply_overrides(config: C, overrides: dict[str, Any] | list[str]) -> C:
    """Return a copy of ``config`` with overrides applied and validated.

    ``overrides`` is either ``["key=value", ...]`` (strings parsed by field type) or a dict of typed values;
    keys of nested configs are dotted (``train.lr``).
    """
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            items.append((key.strip(), value))
    for key, value in items:
        try:
            config = _set(config, key.split("."), value, key)
        except KeyError:
            known = ", ".join(config_keys(config))
            raise ConfigError(f"unknown config key {key!r}; known keys: {known}") from None
    validate(config)
    return config


def validate(config: Any, prefix: str = "") -> None:
    """Check every field's type, then the config's own rules (its ``validate`` method); errors in a nested
    config name its key (``model.name: ...``)."""
    for name, annotation in _field_types(type(config)).items():
        value = getattr(config, name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{prefix}{name}.")
        else:
            check_type(value, annotation, f"{prefix}{name}")
    check = getattr(config, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"{prefix.rstrip('.')}: {exc}" if prefix else str(exc)) from None


def check_type(value: Any, annotation: Any, key: str) -> None:
    """A :class:`ConfigError` naming ``key`` unless ``value`` fits ``annotation`` (and its checkers)."""
    annotation, checkers = _checkers(annotation)
    for checker in checkers:
        try:
            checker.check(value)
        except DlappsError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        check_type(value, inner[0], key)
        return
    if annotation is Any:
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            raise ConfigError(f"{key} must be a tuple, got {value!r}")
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        if fixed and len(value) != len(args):
            raise ConfigError(f"{key} must have {len(args)} items, got {value!r}")
        for item, item_type in zip(value, args if fixed else [args[0]] * len(value), strict=True):
            check_type(item, item_type, key)
        return
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, args))}")
        return
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if annotation in (int, float, str, bool) and (
        not isinstance(value, annotation) or (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key} must be {annotation.__name__}, got {value!r}")


class Positive:
    """Checker for ``Annotated[int | float, POSITIVE]`` fields (and each item of a tuple of them)."""

    @staticmethod
    def check(value: float) -> None:
        if not value > 0:
            raise ConfigError(f"must be positive, got {value}")


class NonNegative:
    @staticmethod
    def check(value: float) -> None:
        if not value >= 0:
            raise ConfigError(f"must be >= 0, got {value}")


class InRange:
    def __init__(self, low: float, high: float, unit: str = "") -> None:
        self.low, self.high, self.unit = low, high, unit

    def check(self, value: float) -> None:
        if not self.low <= value <= self.high:
            raise ConfigError(f"must be in [{self.low:g}, {self.high:g}]{self.unit}, got {value}")


PositiveInt = Annotated[int, Positive()]
PositiveFloat = Annotated[float, Positive()]
NonNegativeFloat = Annotated[float, NonNegative()]
GreyLevels = Annotated[float, InRange(0, 255, " grey levels (units of 1/255)")]  # a perturbation budget in pixels


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists, nested configs nested dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def fingerprint(payload: Any) -> str:
    """Short stable hash of a JSON-serialisable payload (a config, a run's settings)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
