"""GET /admin/v1/keys/{id}/analytics: the view, owner scoping (K20) and a failing store."""

from __future__ import annotations

from typing import Any

import pytest

from extapi_kit.admin import admin_app
from extapi_kit.analytics import KeyActivity
from extapi_kit.audit.sink_memory import MemorySink
from extapi_kit.exceptions import StoreUnavailableError
from tests.admin.conftest import asgi_client
from tests.analytics.support import stack

pytestmark = pytest.mark.anyio
API = "/admin/v1"


async def test_admin_reads_a_keys_analytics(tmp_path: Any) -> None:
    """The admin route shows what the API stack recorded, with the key's last use."""
    async with stack(f"sqlite:///{tmp_path}/a.db") as st:
        rec, key = await st.keys.create("partner", scopes=["s"], owner="acme")
        _, root = await st.keys.create("root", scopes=["admin", "*"])
        async with st.client("198.51.100.7", "sdk/3") as c:
            assert (await c.get("/api/v1/things", headers={"X-API-Key": key})).status_code == 200
        await st.settle()
        await st.keys.flush()
        admin = admin_app(keys=st.keys, audit=MemorySink(), activity=st.activity)
        async with asgi_client(admin) as c:
            r = await c.get(f"{API}/keys/{rec.id}/analytics", headers={"X-API-Key": root})
            missing = await c.get(f"{API}/keys/nokey/analytics", headers={"X-API-Key": root})
            spec = (await c.get(f"{API}/openapi.json", headers={"X-API-Key": root})).json()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key_id"] == rec.id and body["owner"] == "acme"
    assert body["requests"] == 1 and body["status"]["2xx"] == 1
    assert body["ips"][0]["ip"] == "198.51.100.7" and body["ips"][0]["count"] == 1
    assert body["user_agents"][0]["user_agent"] == "sdk/3"
    assert body["last_used_at"] is not None
    assert missing.status_code == 404
    assert "/keys/{key_id}/analytics" in str(spec)


async def test_an_owners_admin_key_cannot_read_another_owners_key() -> None:
    """K20: an admin key of owner acme gets the unknown-key 404 for globex's key."""
    async with stack("memory://") as st:
        theirs, _ = await st.keys.create("theirs", scopes=["s"], owner="globex")
        mine, _ = await st.keys.create("mine", scopes=["s"], owner="acme")
        _, acme_admin = await st.keys.create("acme-admin", scopes=["admin", "*"], owner="acme")
        admin = admin_app(keys=st.keys, audit=MemorySink(), activity=st.activity)
        h = {"X-API-Key": acme_admin}
        async with asgi_client(admin) as c:
            other = await c.get(f"{API}/keys/{theirs.id}/analytics", headers=h)
            unknown = await c.get(f"{API}/keys/AAAAAAAAAAAAAAAAAAAAAA/analytics", headers=h)
            own = await c.get(f"{API}/keys/{mine.id}/analytics", headers=h)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["type"] == unknown.json()["type"]
    fake = "AAAAAAAAAAAAAAAAAAAAAA"
    assert other.json()["detail"] == unknown.json()["detail"].replace(fake, theirs.id)
    assert own.status_code == 200


class _DownStore:
    async def load(self, key_id: str) -> tuple[int, str | None]:
        raise StoreUnavailableError("redis://user:hunter2@10.0.0.1 unreachable")

    async def save(self, key_id: str, version: int, doc: str, *, ttl: int) -> bool:
        raise StoreUnavailableError("down")

    async def prune(self, before: float) -> int:
        return 0

    async def ping(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None


async def test_a_down_activity_store_is_a_503_without_its_url() -> None:
    """A failing store answers 503 problem+json and never shows the store's message."""
    async with stack("memory://") as st:
        rec, _ = await st.keys.create("k", scopes=["s"])
        _, root = await st.keys.create("root", scopes=["admin", "*"])
        admin = admin_app(keys=st.keys, audit=MemorySink(), activity=KeyActivity(_DownStore()))
        async with asgi_client(admin) as c:
            r = await c.get(f"{API}/keys/{rec.id}/analytics", headers={"X-API-Key": root})
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "hunter2" not in r.text
