"""Imports point down: the webhooks and routing packages never import the admin app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import extapi_kit

PACKAGE = Path(extapi_kit.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package", ["webhooks", "routing"])
def test_features_never_import_the_admin_app(package: str) -> None:
    """Z8/Z9 layering (DESIGN §2): no module of webhooks/ or routing/ imports extapi_kit.admin,
    not even lazily inside a function; shared models live in the feature."""
    files = sorted((PACKAGE / package).glob("*.py"))
    assert files
    offenders = {
        f"{f.name}: {m}"
        for f in files
        for m in _imported_modules(f)
        if m == "extapi_kit.admin" or m.startswith("extapi_kit.admin.")
    }
    assert offenders == set()
