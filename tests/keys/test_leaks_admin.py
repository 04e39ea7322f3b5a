"""Admin API over leak reports: ``GET /admin/v1/leaks`` and ``/leaks/{id}`` (admin scope only)."""

from __future__ import annotations

import pytest

from extapi_kit.keys.leaks import LeakResponder, MemoryLeakStore
from tests.admin.conftest import API, admin_setup

pytestmark = pytest.mark.anyio


async def test_admin_lists_and_shows_leak_reports() -> None:
    """K16: operators list reports newest first, filter by key and owner, page by cursor and
    show one; no token is in any answer; a key without the admin scope is refused; an unknown
    id is a 404 problem and a bad cursor a 400; the flagged key's record says when it leaked."""
    store = MemoryLeakStore()
    async with admin_setup(leaks=store) as a:
        ticks = iter(range(100))
        responder = LeakResponder(
            a.keys, store, action="flag", clock=lambda: 1_800_000_000.0 + next(ticks)
        )
        _, k1 = await a.keys.create("one", owner="acme")
        r2, k2 = await a.keys.create("two", owner="globex")
        for i, key in enumerate((k1, k1, k2)):
            await responder.report(key, url=f"https://example.com/{i}", reporter="github")
        resp = await a.client.get(f"{API}/leaks", headers=a.h)
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert [d["url"] for d in data] == [f"https://example.com/{i}" for i in (2, 1, 0)]
        assert data[0]["key_id"] == r2.id and data[0]["action"] == "flagged"
        assert data[0]["grace_ends_at"]
        text = resp.text
        assert k1.split("_")[3] not in text and k2.split("_")[3] not in text
        page = (await a.client.get(f"{API}/leaks?limit=2", headers=a.h)).json()
        assert page["has_more"] and len(page["data"]) == 2
        rest = await a.client.get(f"{API}/leaks?cursor={page['next_cursor']}", headers=a.h)
        assert [d["url"] for d in rest.json()["data"]] == ["https://example.com/0"]
        owner = (await a.client.get(f"{API}/leaks?owner=globex", headers=a.h)).json()["data"]
        assert [d["key_id"] for d in owner] == [r2.id]
        by_key = (await a.client.get(f"{API}/leaks?key_id={r2.id}", headers=a.h)).json()["data"]
        assert [d["key_id"] for d in by_key] == [r2.id]
        one = await a.client.get(f"{API}/leaks/{data[0]['id']}", headers=a.h)
        assert one.json() == data[0]
        missing = await a.client.get(f"{API}/leaks/lk_nope", headers=a.h)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = await a.client.get(f"{API}/leaks?cursor=zzz", headers=a.h)
        assert bad.status_code == 400
        shown = (await a.client.get(f"{API}/keys/{r2.id}", headers=a.h)).json()
        assert shown["leaked_at"].endswith("Z") and shown["status"] == "active"
        _, plain = await a.keys.create("plain", scopes=["projects:read"])
        refused = await a.client.get(f"{API}/leaks", headers={"X-API-Key": plain})
        assert refused.status_code == 403
