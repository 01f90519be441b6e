"""The public surface: ``__all__`` is complete and sorted, and importing stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hospital_bulk


def test_all_is_sorted() -> None:
    """``__all__`` is sorted, constants first, as ruff's RUF022 sorts it."""
    names = hospital_bulk.__all__
    constants = [name for name in names if name.isupper()]
    others = [name for name in names if not name.isupper()]
    assert sorted(constants) + sorted(others, key=str) == names


def test_all_is_complete() -> None:
    """Every public name the package defines is exported, and every export exists."""
    public = {
        name
        for name, value in vars(hospital_bulk).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("hospital_bulk")
    }
    assert public <= set(hospital_bulk.__all__)
    for name in hospital_bulk.__all__:
        assert hasattr(hospital_bulk, name), name


def test_import_pulls_in_no_framework() -> None:
    """``import hospital_bulk`` imports nothing from the web or CLI frameworks, nor pytest.

    httpx itself imports click and rich when they are installed (for its own
    command line), so what a bare ``import httpx`` loads is not held against us.
    Only the contract suites in ``hospital_bulk.testing`` need pytest, imported by name.
    """
    code = (
        "import sys, httpx; before = set(sys.modules); "
        "import hospital_bulk, hospital_bulk.testing; "
        "added = set(sys.modules) - before; "
        "heavy = [m for m in added if m.split('.')[0] in "
        "{'fastapi', 'starlette', 'typer', 'click', 'rich', 'pydantic', 'pydantic_settings', "
        "'uvicorn', 'redis', 'pytest', '_pytest'}]; "
        "print(','.join(sorted(heavy)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "" == result.stdout.strip()


@pytest.mark.parametrize("suite", ["store_contract", "directory_contract"])
def test_contract_suites_import_only_public_names(suite: str) -> None:
    """The contract suites are for third parties: they import no private module of ours."""
    path = Path(hospital_bulk.__file__).parent / "testing" / f"{suite}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = [
        "." * node.level + (node.module or "")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    ]
    modules += [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    private = [
        module
        for module in modules
        if module.startswith(".")
        or (
            module.startswith("hospital_bulk") and any(p.startswith("_") for p in module.split("."))
        )
    ]
    assert [] == private
