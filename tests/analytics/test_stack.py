"""Key analytics through the real stack: what each kind of request adds to its key's activity."""

from __future__ import annotations

import pytest

from extapi_kit.keys.format import generate_key
from tests.analytics.support import stack

pytestmark = pytest.mark.anyio


async def test_activity_counts_statuses_addresses_agents_and_refusals(any_store_url: str) -> None:
    """Served, failed and refused calls land on their key: classes, reasons, IPs, agents."""
    async with stack(any_store_url, read="3/minute") as st:
        rec, key = await st.keys.create("partner", scopes=["s"])
        h = {"X-API-Key": key}
        async with st.client("198.51.100.1", "sdk/1") as c:
            assert (await c.get("/api/v1/things", headers=h)).status_code == 200
            assert (await c.get("/api/v1/things", headers=h)).status_code == 200
            assert (await c.post("/api/v1/special", headers=h)).status_code == 403
            assert (await c.post("/api/v1/boom", headers=h)).status_code == 500
        async with st.client("198.51.100.2", "sdk/2") as c:
            assert (await c.get("/api/v1/things", headers=h)).status_code == 200
            assert (await c.get("/api/v1/things", headers=h)).status_code == 429
            # A wrong secret for this key id is refused and counted as such.
            wrong = {"X-API-Key": generate_key(key_id=rec.id)}
            assert (await c.get("/api/v1/things", headers=wrong)).status_code == 401
        await st.settle()
        got = await st.activity.get(rec.id)
    assert got["requests"] == 7
    assert got["status"] == {"2xx": 3, "3xx": 0, "4xx": 3, "5xx": 1}
    assert got["error_rate"] == round(4 / 7, 4)
    assert got["refused"] == {
        "insufficient-scope": 1,
        "invalid-secret": 1,
        "rate-limited": 1,
    }
    ips = {row["ip"]: row["count"] for row in got["ips"]}
    assert ips == {"198.51.100.1": 4, "198.51.100.2": 2}  # the wrong secret's caller is not listed
    assert [a["user_agent"] for a in got["user_agents"]] == ["sdk/1", "sdk/2"]
    first = got["ips"][0]
    assert first["first_seen"] <= first["last_seen"]


async def test_revoked_and_expired_keys_are_counted_by_reason(store_url: str) -> None:
    """A revoked and an expired key's refusals (same 401 to the caller) are told apart here."""
    async with stack(store_url) as st:
        gone, gone_key = await st.keys.create("gone", scopes=["s"])
        old, old_key = await st.keys.create("old", scopes=["s"], expires_in=60)
        await st.keys.revoke(gone.id)
        st.clock.advance(120)
        async with st.client() as c:
            for k in (gone_key, gone_key, old_key):
                r = await c.get("/api/v1/things", headers={"X-API-Key": k})
                assert r.status_code == 401
                assert r.json()["type"].endswith("/unauthorized")
        await st.settle()
        assert (await st.activity.get(gone.id))["refused"] == {"revoked": 2}
        assert (await st.activity.get(old.id))["refused"] == {"expired": 1}
        assert (await st.activity.get(old.id))["ips"] == []
