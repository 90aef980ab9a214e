"""Layer boundaries, read from the sources: the runtime library (``unetseg``, what
``pip install .`` ships) never imports the ``Training`` package, and the engine never imports
the host layer, the Slicer panel or Slicer itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unetseg"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(PACKAGE.parent)) for path in paths]


@pytest.mark.parametrize("path", _sources(PACKAGE), ids=_ids(_sources(PACKAGE)))
def test_the_runtime_library_does_not_import_training(path):
    found = {name for name in _imports(path) if name.split(".")[0] == "Training"}
    assert not found


ENGINE = _sources(PACKAGE / "engine")


@pytest.mark.parametrize("path", ENGINE, ids=_ids(ENGINE))
def test_the_engine_does_not_import_the_host_or_slicer(path):
    outside = ("unetseg.host", "unetseg.gui", "unetseg.web", "slicer", "qt", "ctk", "vtk")
    found = {
        name
        for name in _imports(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in outside)
    }
    assert not found
