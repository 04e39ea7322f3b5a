"""Self-service webhook routes: a key manages only endpoints within its own grants (case Z9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from extapi_kit.keys import KeyService
from extapi_kit.routing import ExternalAPI
from extapi_kit.webhooks import WebhookManager, webhook_store_from_url
from extapi_kit.webhooks.selfservice import add_self_service_routes
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio

EP = "/api/v1/webhooks/endpoints"
HOOKS = ["webhooks:read", "webhooks:write"]


@asynccontextmanager
async def _stack(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, KeyService]]:
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", hasher=cheap_hasher(), cache_ttl=0)
    store = webhook_store_from_url(f"sqlite:///{tmp_path}/hooks.db")
    api = ExternalAPI(prefix="/api")
    add_self_service_routes(api, WebhookManager(store), max_endpoints=3)
    transport = httpx.ASGITransport(api.build(key_store=keys), client=("203.0.113.7", 1234))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c, keys
    finally:
        await store.aclose()
        await keys.aclose()


async def test_project_key_cannot_manage_its_owners_wider_endpoints(tmp_path: Path) -> None:
    """Z9: a project-1 key does not list, show, rotate, read deliveries of or delete the
    endpoint of an unrestricted sibling key (same 404 as a missing endpoint); it manages its
    own; the unrestricted key manages both; a project-2 sibling sees neither project-1 one."""
    async with _stack(tmp_path) as (c, keys):
        _, wide = await keys.create("acme", owner="acme", scopes=HOOKS)
        _, p1 = await keys.create("acme-p1", owner="acme", scopes=HOOKS, grants={"projects": ["1"]})
        _, p2 = await keys.create("acme-p2", owner="acme", scopes=HOOKS, grants={"projects": ["2"]})
        w, r1, r2 = ({"X-API-Key": k} for k in (wide, p1, p2))
        r = await c.post(EP, json={"url": "https://hooks.example.com/org"}, headers=w)
        assert r.status_code == 201, r.text
        org = r.json()["endpoint"]["id"]
        r = await c.post(EP, json={"url": "https://hooks.example.com/p1"}, headers=r1)
        assert r.status_code == 201, r.text
        mine = r.json()["endpoint"]["id"]
        assert r.json()["endpoint"]["grants"] == {"projects": ["1"]}

        listed = (await c.get(EP, headers=r1)).json()["data"]
        assert [e["id"] for e in listed] == [mine]
        missing = await c.get(f"{EP}/ep_nope", headers=r1)
        for method, suffix in (
            ("GET", ""),
            ("POST", "/rotate-secret"),
            ("GET", "/deliveries"),
            ("DELETE", ""),
        ):
            r = await c.request(method, f"{EP}/{org}{suffix}", headers=r1)
            assert r.status_code == 404, (method, suffix, r.text)
            assert r.content == missing.content
        assert (await c.get(f"{EP}/{mine}", headers=r1)).status_code == 200
        assert (await c.post(f"{EP}/{mine}/rotate-secret", headers=r1)).status_code == 200

        assert {e["id"] for e in (await c.get(EP, headers=w)).json()["data"]} == {org, mine}
        assert (await c.get(EP, headers=r2)).json()["data"] == []
        assert (await c.get(f"{EP}/{mine}", headers=r2)).status_code == 404
        assert (await c.get(f"{EP}/{org}", headers=w)).status_code == 200

        # The owner's cap counts every endpoint of the owner, visible to the caller or not.
        assert (
            await c.post(EP, json={"url": "https://h.example.com/3"}, headers=r2)
        ).status_code == 201
        r = await c.post(EP, json={"url": "https://h.example.com/4"}, headers=r2)
        assert r.status_code == 422, r.text
