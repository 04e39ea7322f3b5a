"""Missing and empty credentials against the built stack."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.reliability.stack import build_stack, cheap_service, count_effects, lifespan

pytestmark = pytest.mark.anyio


async def test_missing_or_empty_key_is_one_generic_401(tmp_path: Path) -> None:
    """A1: no key, empty X-API-Key, bare ``Bearer`` and ``Bearer`` + spaces → the same 401 with
    ``WWW-Authenticate`` and the same body; the write route never runs."""
    service = cheap_service("memory://")
    effects = tmp_path / "effects.log"
    app = build_stack(keys=service, redis_url=None, audit_db=tmp_path / "a.db", effects=effects)
    variants: list[dict[str, str]] = [
        {},
        {"X-API-Key": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": ""},
    ]
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answers = [await c.post("/api/v1/orders", json={}, headers=h) for h in variants]
    assert {r.status_code for r in answers} == {401}
    assert all(r.headers.get("www-authenticate") for r in answers)
    bodies = {(r.json()["type"], r.json()["title"], r.json().get("detail")) for r in answers}
    assert len(bodies) == 1, bodies
    assert count_effects(effects) == {}
    await service.aclose()
