"""The admin audit query and the per-key activity view derived from the audit trail."""

from __future__ import annotations

import pytest

from extapi_kit.admin import create_admin_api
from extapi_kit.audit.record import AuditRecord, new_record_id
from extapi_kit.testing import FakeClock
from tests.admin.conftest import API, Admin, admin_setup, asgi_client, make_keys

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def _rec(ts: float, key_id: str, *, status: int = 200, rejection: str | None = None) -> AuditRecord:
    return AuditRecord(
        timestamp_us=int(ts * 1_000_000),
        request_id=new_record_id(),
        method="GET",
        path="/api/v1/things",
        route="/api/v1/things",
        status=status,
        key_id=key_id,
        rejection=rejection,
        rate_limit={"policy": "read", "limit": 10, "remaining": 3, "reset_after": 5.0,
                    "allowed": rejection is None, "degraded": False},
        id=new_record_id(),
    )  # fmt: skip


async def test_audit_query_returns_the_admin_calls_with_filters(admin: Admin) -> None:
    """GET /audit returns audited calls newest first, filtered by key, route, method and status."""
    c, h = admin.client, admin.h
    await c.get(f"{API}/keys", headers=h)
    await c.get(f"{API}/keys/missing", headers=h)
    await c.get(f"{API}/keys")  # 401, no key
    page = (await c.get(f"{API}/audit", params={"key_id": admin.admin_id}, headers=h)).json()
    routes = [(r["method"], r["route"], r["status"]) for r in page["data"]]
    assert ("GET", f"{API}/keys", 200) in routes
    assert ("GET", f"{API}/keys/{{key_id}}", 404) in routes
    assert all(r["key_id"] == admin.admin_id for r in page["data"])
    stamps = [r["timestamp_us"] for r in page["data"]]
    assert stamps == sorted(stamps, reverse=True)

    only_401 = (await c.get(f"{API}/audit", params={"status": "401"}, headers=h)).json()
    assert [r["rejection"] for r in only_401["data"]] == ["unauthorized"]
    by_route = await c.get(
        f"{API}/audit", params={"route": f"{API}/keys/{{key_id}}", "method": "get"}, headers=h
    )
    assert {r["status"] for r in by_route.json()["data"]} == {404}


async def test_audit_query_pages_and_time_window() -> None:
    """limit/cursor page through the trail without overlap; since/until bound the window."""
    async with admin_setup() as admin:
        await admin.sink.write_batch([_rec(T0 + i, "k1") for i in range(7)])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"key_id": "k1", "limit": "3"} | ({"cursor": cursor} if cursor else {})
            page = (await admin.client.get(f"{API}/audit", params=params, headers=admin.h)).json()
            seen.extend(r["id"] for r in page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 7
        window: dict[str, str | float] = {
            "key_id": "k1",
            "since": "2027-01-15T08:00:02Z",
            "until": T0 + 5,
        }
        r = await admin.client.get(f"{API}/audit", params=window, headers=admin.h)
        assert [x["timestamp_us"] // 1_000_000 for x in r.json()["data"]] == [
            T0 + 4, T0 + 3, T0 + 2
        ]  # fmt: skip
        bad = await admin.client.get(f"{API}/audit", params={"since": "yesterday"}, headers=admin.h)
        assert bad.status_code == 422


async def test_activity_buckets_requests_and_rejections_per_minute() -> None:
    """GET /keys/{id}/activity counts calls and rejections per minute over the last hour."""
    clock = FakeClock(T0 + 30)
    async with admin_setup(clock=clock) as admin:
        rec, _ = await admin.keys.create("busy", rate_limits={"read": "10/minute"})
        k = rec.id
        records = [_rec(T0 - 3600 - 5, k)]  # before the window
        records += [_rec(T0 - 120 + i, k) for i in range(4)]  # 2 minutes ago: 4 ok
        records += [_rec(T0 + 1 + i, k, status=429, rejection="quota-exceeded") for i in range(3)]
        records += [_rec(T0 + 10, k, status=500), _rec(T0 + 11, "someone-else")]
        await admin.sink.write_batch(records)
        r = await admin.client.get(f"{API}/keys/{k}/activity", headers=admin.h)
        assert r.status_code == 200, r.text
        u = r.json()
        assert u["source"] == "audit" and len(u["buckets"]) == 60
        assert u["buckets"][-1]["start"] == "2027-01-15T08:00:00Z"
        assert u["buckets"][-1] == {"start": "2027-01-15T08:00:00Z", "requests": 4,
                                    "rejections": 3, "rate_limited": 3, "errors": 1}  # fmt: skip
        assert u["buckets"][-3]["requests"] == 4 and u["buckets"][-3]["rejections"] == 0
        assert (u["requests"], u["rejections"], u["rate_limited"]) == (8, 3, 3)
        assert u["rate_limits"] == {"read": "10/minute"}
        assert u["last_rate_limit"]["remaining"] == 3
        short = await admin.client.get(
            f"{API}/keys/{k}/activity", params={"minutes": "1"}, headers=admin.h
        )
        assert short.json()["requests"] == 4
        missing = await admin.client.get(f"{API}/keys/nope/activity", headers=admin.h)
        assert missing.status_code == 404


async def test_without_audit_sink_the_audit_routes_do_not_exist() -> None:
    """create_admin_api without audit= exposes no /audit or activity route (404 to an admin)."""
    keys = make_keys()
    _, secret = await keys.create("root", scopes=["admin"])
    app = create_admin_api(keys=keys).build()
    async with asgi_client(app) as c:
        h = {"X-API-Key": secret}
        assert (await c.get(f"{API}/keys", headers=h)).status_code == 200
        assert (await c.get(f"{API}/audit", headers=h)).status_code == 404


async def test_custom_scope_and_prefix() -> None:
    """admin_scope and prefix move the API: a key with only 'admin' is refused by 'ops:admin'."""
    async with admin_setup(admin_scope="ops:admin", prefix="/ops") as admin:
        assert (await admin.client.get("/ops/v1/keys", headers=admin.h)).status_code == 403
        _, ops = await admin.keys.create("ops", scopes=["ops:admin"])
        ok = await admin.client.get("/ops/v1/keys", headers={"X-API-Key": ops})
        assert ok.status_code == 200
        page = await admin.client.get("/ops/console")
        assert page.status_code == 200 and 'content="/ops/v1"' in page.text
