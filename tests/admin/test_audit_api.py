"""The admin audit query and the per-key activity view derived from the audit trail."""

from __future__ import annotations

import pytest

from extapi_kit.admin import admin_app, create_admin_api
from extapi_kit.audit import audit_store_from_url
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


# Malformed on every sink: not a cursor of any built-in format, or out of the backends' ranges.
MALFORMED_CURSORS = ["x", "-1", "[]", "1.5.6", "\u00b2.1", "1.-5", "-", ".", "9" * 30 + ".1",
                     "1-" + "9" * 30, "\x1b[2J", "1 .5"]  # fmt: skip


async def test_malformed_audit_cursor_is_400_on_every_sink(store_url: str) -> None:
    """M9: GET /admin/v1/audit?cursor=<junk> is the same 400 problem on memory, SQLite and Redis
    (never a 500), a cursor of another sink's format included; real cursors still page."""
    redis = store_url.startswith("redis")
    foreign = "1.5" if redis else "1-5"  # the other format: a memory/SQLite cursor, a stream id
    keys = make_keys()
    sink = audit_store_from_url(store_url)
    _, secret = await keys.create("root", scopes=["admin"])
    try:
        await sink.write_batch([_rec(T0 + i, "k1") for i in range(3)])
        app = admin_app(keys=keys, audit=sink)
        async with asgi_client(app) as c:
            h = {"X-API-Key": secret}
            for cursor in [*MALFORMED_CURSORS, foreign]:
                r = await c.get(f"{API}/audit", params={"cursor": cursor}, headers=h)
                assert r.status_code == 400, (cursor, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                body = r.json()
                assert body["type"].endswith("/bad-request") and body["detail"] == "invalid cursor"
            first = await c.get(f"{API}/audit", params={"key_id": "k1", "limit": "2"}, headers=h)
            nxt = first.json()["next_cursor"]
            assert nxt
            second = await c.get(
                f"{API}/audit", params={"key_id": "k1", "limit": "2", "cursor": nxt}, headers=h
            )
            assert second.status_code == 200 and len(second.json()["data"]) == 1
            empty = await c.get(f"{API}/audit", params={"key_id": "k1", "cursor": ""}, headers=h)
            assert len(empty.json()["data"]) == 3
    finally:
        await sink.aclose()
        await keys.aclose()


async def test_keys_anywhere_in_the_query_are_refused_and_never_reach_the_audit_trail(
    admin: Admin,
) -> None:
    """A17: a query carrying a key under any name or wrapping (Bearer, spaces, ';', percent- or
    double-encoded, as a bare name) is refused with 400 api-key-in-query, and no record served by
    GET /admin/v1/audit holds the key: not the query, the path or the user agent."""
    c, key = admin.client, admin.admin_key
    secret = key[len(key.rsplit("_", 1)[0]) + 1 :]  # the secret and checksum
    double = "".join(f"%25{ord(ch):02X}" for ch in key)
    queries = [
        f"authorization={key}",
        f"auth=Bearer%20{key}",
        f"q={key}%20",
        f"x={key};",
        f"x={key};y=1",
        f"{key}",
        f"{key}=1",
        f"note=foo_{key}",
        f"d={double}",
        f"a=1&b=%20Bearer+{key}",
    ]
    for qs in queries:
        r = await c.get(f"{API}/keys?{qs}", headers=admin.h)
        assert r.status_code == 400, (qs, r.text)
        assert r.json()["type"].endswith("/api-key-in-query")
    await c.get(f"{API}/keys/{key}", headers={**admin.h, "User-Agent": f"curl/8 {key}"})
    page = await c.get(f"{API}/audit", params={"limit": "100"}, headers=admin.h)
    assert page.status_code == 200
    records = page.json()["data"]
    assert sum(r["rejection"] == "api-key-in-query" for r in records) == len(queries)
    assert secret not in page.text and secret not in str(await admin.sink.query(limit=1000))
    assert any("[REDACTED]" in (r["user_agent"] or "") for r in records)
    assert any("[REDACTED]" in r["path"] for r in records)
