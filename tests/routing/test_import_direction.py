"""The routing package reads top-down: every import between its modules points one way."""

from __future__ import annotations

import ast
from pathlib import Path

import extapi_kit.routing

PACKAGE = Path(extapi_kit.routing.__file__).parent
# Lowest first. A module may import only modules before it: the registry describes routes,
# OpenAPI and the router are built from it, build() wraps the router, and ExternalAPI (api.py)
# is the facade on top that offers all of them as methods.
LAYERS = [
    "settings",
    "_buffered",
    "matcher",
    "paths",
    "grants",
    "grant_filter",
    "validation",
    "upstream",
    "routes",
    "targets",
    "handlers",
    "pagination",
    "registry",
    "docs",
    "openapi",
    "router",
    "build",
    "api",
]


def _imports(module: str) -> set[str]:
    """Every ``extapi_kit.routing.*`` module named anywhere in ``module`` (lazy and
    TYPE_CHECKING imports included: a circle hidden in a function is still a circle)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["extapi_kit", "routing"] and len(parts) > 2 and parts[2] in LAYERS:
                found.add(parts[2])
    return found - {module}


def test_every_module_is_placed() -> None:
    """G7: each routing module has a place in the layer order (a new one must be placed)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_imports_point_down() -> None:
    """G7: routing modules import only modules below them, so no import circle exists."""
    upward = {
        (module, imported)
        for i, module in enumerate(LAYERS)
        for imported in _imports(module)
        if LAYERS.index(imported) >= i
    }
    assert upward == set()


def test_registry_openapi_router_build_never_import_the_facade() -> None:
    """G7: the registry, OpenAPI, the router and build() are built without ExternalAPI."""
    for module in ("registry", "routes", "targets", "openapi", "router", "build"):
        assert "api" not in _imports(module), module
    assert _imports("routes").isdisjoint({"targets", "handlers", "router"})
