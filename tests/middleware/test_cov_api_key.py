"""ApiKeyMiddleware options: wildcard exemptions, a single scope string, no-Bearer challenge."""

from __future__ import annotations

import pytest

from tests.middleware.test_api_key import Env

pytestmark = pytest.mark.anyio


async def test_wildcard_exemption_and_single_scope_string() -> None:
    """A8/A13: "/static*" exempts that prefix only; a scope given as one string is enforced."""
    env = Env(required_scopes="read", exempt_paths=["/static*"], allow_bearer=False)
    _, writer = await env.service.create("w", scopes=["write"])
    _, reader = await env.service.create("r", scopes=["read"])
    async with env.client() as c:
        assert (await c.get("/static/app.js")).status_code == 200
        denied = await c.get("/api/items")
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        assert (await c.get("/api/items", headers={"X-API-Key": writer})).status_code == 403
        assert (await c.get("/api/items", headers={"X-API-Key": reader})).status_code == 200
    assert env.app.calls == 2
    await env.service.aclose()


async def test_prefix_lookalike_in_an_unrelated_parameter_is_not_refused() -> None:
    """A9 without false positives: ``?ref=xk_not_a_key`` is not a key, so the call goes through."""
    env = Env(required_scopes=["read"])
    _, key = await env.service.create("r", scopes=["read"])
    async with env.client() as c:
        ok = await c.get("/x", params={"ref": "xk_not_a_key"}, headers={"X-API-Key": key})
        assert ok.status_code == 200
        leaked = await c.get("/x", params={"ref": key}, headers={"X-API-Key": key})
        assert leaked.status_code == 400
    await env.service.aclose()
