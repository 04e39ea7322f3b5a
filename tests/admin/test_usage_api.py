"""The admin usage routes over the usage counters (issue 9), on real SQLite and Redis stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extapi_kit.admin import create_admin_api
from extapi_kit.admin.usage_routes import sum_days
from extapi_kit.exceptions import ExtAPIKitError
from extapi_kit.testing import FakeClock
from extapi_kit.usage import UsageTracker
from tests.admin.conftest import API, Admin, admin_setup, asgi_client, make_keys
from tests.support.redis_server import RedisServer
from tests.usage.support import MID_NOVEMBER

pytestmark = pytest.mark.anyio

DAY = 86400


@pytest.fixture(params=["sqlite", "redis"])
def usage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A durable usage store URL: a SQLite file, or the private test Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/usage.db"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
async def tracker(usage_url: str) -> AsyncIterator[UsageTracker]:
    """A tracker on the durable store, its clock mid-November 2026, with an owner quota."""
    t = UsageTracker(
        usage_url, clock=FakeClock(MID_NOVEMBER), owner_quotas={"acme": {"daily": 100}}
    )
    yield t
    await t.aclose()


def _count(
    t: UsageTracker, key_id: str, owner: str | None, days_ago: int, *rows: tuple[str, str, int]
) -> None:
    day = t.calendar.at(t.clock() - days_ago * DAY).day
    for cls, outcome, n in rows:
        for _ in range(n):
            t.record(key_id, owner, day, cls, outcome)


async def _charge(t: UsageTracker, key_id: str, quota: dict[str, int], owner: str, n: int) -> None:
    now = t.clock()
    plan = t.quota_plan(now, key_id, quota, owner)
    assert plan is not None
    for _ in range(n):
        assert (await t.charge(plan, 1, now, key_id, owner)).allowed


async def test_key_usage_days_totals_month_and_quotas(tracker: UsageTracker) -> None:
    """GET /keys/{id}/usage gives daily counters, their totals, the month and quota use."""
    async with admin_setup(usage=tracker) as admin:
        rec, _ = await admin.keys.create("partner", owner="acme", quota={"monthly": 10})
        k = rec.id
        _count(tracker, k, "acme", 2, ("read", "served", 3))
        _count(tracker, k, "acme", 0, ("read", "served", 4), ("write", "r:quota-exhausted", 2))
        _count(tracker, k, "acme", 0, ("write", "errors", 1))
        _count(tracker, "other-key", "acme", 0, ("read", "served", 7))
        await _charge(tracker, k, {"monthly": 10}, "acme", 8)
        # Not flushed yet: the admin read flushes this process's pending counts first.
        assert tracker.pending
        r = await admin.client.get(f"{API}/keys/{k}/usage", params={"days": 3}, headers=admin.h)
        assert r.status_code == 200, r.text
        u = r.json()
        assert (u["key_id"], u["owner"], u["source"]) == (k, "acme", "counters")
        assert (u["since"], u["until"]) == ("2026-11-13", "2026-11-15")
        assert [d["date"] for d in u["days"]] == ["2026-11-13", "2026-11-14", "2026-11-15"]
        assert [d["total"] for d in u["days"]] == [3, 0, 7]
        today = u["days"][-1]
        assert (today["read"], today["write"], today["served"], today["errors"]) == (4, 3, 4, 1)
        assert today["rejected"] == {"quota-exhausted": 2}
        assert today["classes"] == {"read": 4, "write": 3}
        totals = u["totals"]
        assert (totals["total"], totals["read"], totals["served"]) == (10, 7, 7)
        assert totals["rejected"] == {"quota-exhausted": 2}
        assert u["month"]["month"] == "2026-11" and u["month"]["total"] == 10
        assert u["quotas"] == [
            {
                "scope": "key",
                "period": "monthly",
                "period_id": "2026-11",
                "limit": 10,
                "used": 8,
                "remaining": 2,
                "resets_at": "2026-12-01T00:00:00Z",
            },
            {
                "scope": "owner",
                "period": "daily",
                "period_id": "2026-11-15",
                "limit": 100,
                "used": 8,
                "remaining": 92,
                "resets_at": "2026-11-16T00:00:00Z",
            },
        ]
        default = await admin.client.get(f"{API}/keys/{k}/usage", headers=admin.h)
        assert len(default.json()["days"]) == 30


async def test_owner_usage_sums_its_keys(tracker: UsageTracker) -> None:
    """GET /owners/{owner}/usage sums every key of the owner and shows the owner's quota."""
    async with admin_setup(usage=tracker) as admin:
        a, _ = await admin.keys.create("a", owner="acme")
        b, _ = await admin.keys.create("b", owner="acme")
        _count(tracker, a.id, "acme", 0, ("read", "served", 2))
        _count(tracker, b.id, "acme", 1, ("write", "served", 5))
        _count(tracker, "stranger", "globex", 0, ("read", "served", 9))
        await tracker.flush()
        r = await admin.client.get(f"{API}/owners/acme/usage?days=2", headers=admin.h)
        assert r.status_code == 200, r.text
        u = r.json()
        assert (u["owner"], u["key_id"]) == ("acme", None)
        assert [d["total"] for d in u["days"]] == [5, 2]
        assert (u["totals"]["read"], u["totals"]["write"]) == (2, 5)
        assert u["month"]["total"] == 7
        assert [(q["scope"], q["period"], q["used"]) for q in u["quotas"]] == [
            ("owner", "daily", 0)
        ]
        # A key without quota, whose owner has none either, reports no quota.
        c, _ = await admin.keys.create("c", owner="initech")
        quotas = (await admin.client.get(f"{API}/keys/{c.id}/usage", headers=admin.h)).json()
        assert quotas["quotas"] == [] and quotas["totals"]["total"] == 0


async def test_unknown_key_or_owner_and_bad_days_are_problems(tracker: UsageTracker) -> None:
    """An unknown key or owner is a 404 problem; days outside 1..400 is a 422 problem."""
    async with admin_setup(usage=tracker) as admin:
        rec, _ = await admin.keys.create("k", owner="acme")
        missing = await admin.client.get(f"{API}/keys/nope/usage", headers=admin.h)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["type"].endswith("not-found")
        assert (
            await admin.client.get(f"{API}/owners/nobody/usage", headers=admin.h)
        ).status_code == 404
        for bad in ("0", "401", "x"):
            r = await admin.client.get(
                f"{API}/keys/{rec.id}/usage", params={"days": bad}, headers=admin.h
            )
            assert r.status_code == 422, bad
        top = await admin.client.get(
            f"{API}/keys/{rec.id}/usage", params={"days": "400"}, headers=admin.h
        )
        assert top.status_code == 200 and len(top.json()["days"]) == 400
        # The admin scope is required like on every admin route.
        _, plain = await admin.keys.create("plain", scopes=["projects:read"])
        denied = await admin.client.get(f"{API}/keys/{rec.id}/usage", headers={"X-API-Key": plain})
        assert denied.status_code == 403


async def test_routes_exist_only_with_a_tracker(admin: Admin) -> None:
    """Without usage= the counter routes are absent (404) and undocumented; activity remains."""
    rec, _ = await admin.keys.create("k", owner="acme")
    assert (
        await admin.client.get(f"{API}/keys/{rec.id}/usage", headers=admin.h)
    ).status_code == 404
    assert (await admin.client.get(f"{API}/owners/acme/usage", headers=admin.h)).status_code == 404
    activity = await admin.client.get(f"{API}/keys/{rec.id}/activity", headers=admin.h)
    assert activity.status_code == 200 and activity.json()["source"] == "audit"
    doc = (await admin.client.get(f"{API}/openapi.json", headers=admin.h)).json()
    assert f"{API}/keys/{{key_id}}/usage" not in doc["paths"]


async def test_openapi_documents_the_usage_routes(tmp_path: Path) -> None:
    """create_admin_api(usage=...) declares and documents both usage routes."""
    keys = make_keys()
    tracker = UsageTracker(f"sqlite:///{tmp_path}/usage.db")
    _, secret = await keys.create("root", scopes=["admin"])
    app = create_admin_api(keys=keys, usage=tracker).build()
    async with asgi_client(app) as c:
        doc = (await c.get(f"{API}/openapi.json", headers={"X-API-Key": secret})).json()
    paths = doc["paths"]
    assert {f"{API}/keys/{{key_id}}/usage", f"{API}/owners/{{owner}}/usage"} <= set(paths)
    params = paths[f"{API}/keys/{{key_id}}/usage"]["get"]["parameters"]
    assert any(p["name"] == "days" for p in params)
    await tracker.aclose()
    await keys.aclose()


async def test_unreachable_usage_store_is_a_503_without_its_address(
    private_redis: RedisServer,
) -> None:
    """L8, A10: with the Redis usage store down, the usage route answers a 503 problem (never a
    500) whose body names no store address."""
    tracker = UsageTracker(private_redis.url)
    async with admin_setup(usage=tracker) as admin:
        rec, _ = await admin.keys.create("k")
        ok = await admin.client.get(f"{API}/keys/{rec.id}/usage", headers=admin.h)
        assert ok.status_code == 200
        private_redis.stop()
        _count(tracker, rec.id, None, 0, ("read", "served", 1))  # its pre-read flush fails too
        r = await admin.client.get(f"{API}/keys/{rec.id}/usage", headers=admin.h)
        assert r.status_code == 503, r.text
        assert r.json()["type"].endswith("service-unavailable")
        host_port = private_redis.url.split("//", 1)[1].split("/", 1)[0]
        assert host_port not in r.text and "redis" not in r.text.lower()
    with pytest.raises(ExtAPIKitError):  # the unsent batch cannot be flushed while closing
        await tracker.aclose()


async def test_invalid_owner_quota_is_left_out(tmp_path: Path) -> None:
    """An owner quota that does not parse is left out; the key's own quota is still reported."""
    tracker = UsageTracker(
        f"sqlite:///{tmp_path}/usage.db", owner_quotas=lambda owner: {"monthly": -1}
    )
    async with admin_setup(usage=tracker) as admin:
        rec, _ = await admin.keys.create("k", owner="acme", quota={"daily": 3})
        r = await admin.client.get(f"{API}/keys/{rec.id}/usage", headers=admin.h)
        assert r.status_code == 200
        assert [(q["scope"], q["period"], q["limit"]) for q in r.json()["quotas"]] == [
            ("key", "daily", 3)
        ]
    await tracker.aclose()


def test_sum_days_adds_counts_and_merges_maps() -> None:
    """sum_days adds the numbers and merges the rejection and class maps of several days."""
    day = {
        "read": 1,
        "write": 2,
        "total": 3,
        "served": 2,
        "errors": 0,
        "rejected": {"quota-exhausted": 1},
        "classes": {"read": 1, "write": 2},
    }
    other = {**day, "rejected": {"forbidden": 2}, "classes": {"search": 3}}
    out = sum_days([day, other])
    assert (out.read, out.write, out.total, out.served) == (2, 4, 6, 4)
    assert out.rejected == {"quota-exhausted": 1, "forbidden": 2}
    assert out.classes == {"read": 1, "write": 2, "search": 3}
    assert sum_days([]).total == 0
