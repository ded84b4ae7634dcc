"""The package's shape: imports point one way, without cycles, and every plug-in registers the same way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dlapps"
# Each package may import only those listed after it (and dlapps' top-level modules: config, errors, registry).
LAYERS = {
    "data": set(),
    "models": {"data"},
    "report": {"data", "models"},
    "train": {"data", "models", "report"},
    "evaluate": {"data", "models"},
    "explain": {"data", "models"},
    "ood": {"data", "models", "report", "evaluate"},
    "attacks": {"data", "models", "evaluate", "ood"},
}
TOP_LEVEL = {"", "config", "errors", "registry"}  # "": the package itself (its version)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("dlapps", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        found[name] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return found


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlapps"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("dlapps")}
    return names


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: {m for m in _imports(tree) if m in modules} for name, (_, tree) in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycle = path[path.index(other) :] + [other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, [*path, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_library_packages_import_only_what_lies_below_them():
    wrong = []
    for name, (_, tree) in _modules().items():
        package = _package(name)
        if package not in LAYERS:
            continue
        for other in _imports(tree):
            target = _package(other)
            if target != package and target not in TOP_LEVEL and target not in LAYERS[package]:
                wrong.append(f"{name} imports {other}")
    assert not wrong, "; ".join(wrong)


def test_every_plug_in_registers_with_the_decorator_on_itself():
    """``@REGISTRY.register("name", **metadata)`` on the class or function, never a call with a value."""
    calls, registries = [], set()
    for path, tree in _modules().values():
        decorators = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                for decorator in node.decorator_list:
                    decorators.add(id(decorator))
                    if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "register":
                        registries.add(ast.unparse(decorator.func.value))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "register"
                and id(node) not in decorators
            ):
                calls.append(f"{path.name}:{node.lineno}")
    assert not calls, f"registrations that are not a decorator: {', '.join(calls)}"
    assert {
        "DATASETS",
        "OOD_SETS",
        "MODELS",
        "PRETRAINED",
        "DETECTORS",
        "ATTACKS",
        "CAM_METHODS",
        "STUDIES",
    } <= registries
