"""The example app runs and shows the documented behaviour."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry_app.py"


async def test_example_check_mode() -> None:
    """examples/registry_app.py: exposed routes work, internal ones 404, no key 401."""
    spec = importlib.util.spec_from_file_location("registry_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = dict(await module.check())
    assert results == {
        "get project": 200,
        "no key": 401,
        "internal route": 404,
        "list page": 200,
        "next page": 200,
        "create": 201,
        "openapi": 200,
    }
