"""The package layout the design notes promise, read from the source (issue 11, item 6)."""

import ast
import importlib
from pathlib import Path

import pytest

import sightql

SRC = Path(sightql.__file__).parent


def _trees() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(SRC).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(SRC.rglob("*.py"))
    ]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


@pytest.mark.parametrize("module", [
    "sightql.models.torch.files", "sightql.models.torch.runtime", "sightql.models.torch.export",
    "sightql.models.keras.files", "sightql.models.keras.runtime", "sightql.models.keras.export",
    "sightql.models.onnx.files", "sightql.models.onnx.runtime",
    "sightql.registry.store", "sightql.registry.resolve", "sightql.registry.registry",
    "sightql.images.spec",
])
def test_each_framework_and_the_registry_have_one_module_per_job(module):
    importlib.import_module(module)


def _package(module: str) -> str:
    """'sightql.registry.torch_files' -> 'registry'; 'sightql.models.torch' (a folder) -> 'models/torch'."""
    parts = module.split(".")[1:]
    return "/".join(parts if SRC.joinpath(*parts).is_dir() else parts[:-1]) or "."


def test_no_package_imports_a_private_name_from_another():
    found = [
        f"{path}: from {node.module} import {alias.name}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sightql.")
        and _package(node.module) != Path(path).parent.as_posix()
        for alias in node.names
        if _private(alias.name)
    ]
    assert found == []


def test_only_the_registry_store_touches_its_private_methods():
    """``registry._x`` / ``session.registry._x`` is used nowhere: callers go through public, narrow methods."""
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            owner = node.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if owner_name in ("registry", "store"):
                found.append(f"{path}:{node.lineno}: {owner_name}.{node.attr}")
    assert found == []


def test_images_import_nothing_above_them():
    """Images sit below models: the input spec lives in images/, and models/card.py imports it from there."""
    allowed = ("sightql.images", "sightql.errors", "sightql.config")
    found = [
        f"{path}: {node.module}"
        for path, tree in _trees() if path.startswith("images/")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sightql")
        and not node.module.startswith(allowed)
    ]
    assert found == []


ADAPTERS = ("cli/", "app/", "api/", "torch/")


def test_no_module_below_the_session_names_it():
    """Only the session and the adapters above it know the Session; lower layers get the narrow Warehouse.

    ``lint-imports`` (in ``make test``) refuses an import that points up; this also catches a Session
    passed down untyped and used by name in an annotation or a docstring-free signature.
    """
    found = [
        f"{path}:{node.lineno}"
        for path, tree in _trees()
        if path != "session.py" and path != "__init__.py" and not path.startswith(ADAPTERS)
        for node in ast.walk(tree)
        if (isinstance(node, ast.Name) and node.id == "Session")
        or (isinstance(node, ast.arg) and node.arg == "session")
        or (isinstance(node, ast.Constant) and node.value == "Session")
        or (isinstance(node, ast.ImportFrom) and node.module in ("sightql", "sightql.session"))
    ]
    assert found == []
