"""UsageMiddleware quotas: exhaustion and reset, costs, owners, headers, events, Redis."""

from __future__ import annotations

import math
from typing import Any

import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings
from extapi_kit.middleware.usage import UsageMiddleware
from extapi_kit.testing import FakeClock
from extapi_kit.usage import EVENT_EXHAUSTED, EVENT_WARNING
from extapi_kit.usage.store_memory import MemoryUsageStore
from tests.usage.support import (
    DEC_FIRST,
    MID_NOVEMBER,
    Events,
    client,
    ok_app,
    who,
    with_principals,
)

PLAIN = Principal(key_id="plain1", owner="acme")
MONTHLY = Principal(key_id="month1", owner="acme", quota={"monthly": 3})
DAILY = Principal(key_id="day1", quota={"daily": 2})
PEOPLE = {"plain": PLAIN, "monthly": MONTHLY, "daily": DAILY}
ROUTES = {
    "/search": RouteSettings("/search", method="POST", rate_class="read", cost=1),
    "/export": RouteSettings("/export", method="POST", cost=2),
    "/free": RouteSettings("/free", cost=0),
}


class SpyStore(MemoryUsageStore):
    """A memory store that counts quota charges."""

    def __init__(self) -> None:
        super().__init__()
        self.consumes = 0

    async def consume(self, checks: Any, cost: int) -> tuple[bool, list[int]]:
        self.consumes += 1
        return await super().consume(checks, cost)


@pytest.mark.anyio
async def test_monthly_quota_exhausts_mid_month_and_recovers_at_the_reset() -> None:
    """Quota 3: the 4th call gets 429 quota-exhausted, Retry-After to 1 Dec 00:00 UTC, then 200."""
    clock = FakeClock(MID_NOVEMBER)
    mw = UsageMiddleware(ok_app, clock=clock)
    async with client(with_principals(mw, PEOPLE)) as c:
        for left in (2, 1, 0):
            r = await c.get("/x", headers=who("monthly"))
            assert r.status_code == 200
            assert r.headers["ratelimit-policy"] == '"quota";q=3;w=2592000'
            assert r.headers["ratelimit"].startswith(f'"quota";r={left};t=')
        clock.advance(3600)
        r = await c.get("/x", headers=who("monthly"))
        assert r.status_code == 429
        body = r.json()
        assert body["type"].endswith("/quota-exhausted")
        assert body["violated-policies"] == ["quota"]
        expected = math.ceil(DEC_FIRST - clock())
        assert r.headers["retry-after"] == str(expected)
        assert r.headers["ratelimit"] == f'"quota";r=0;t={expected}'
        clock.set(DEC_FIRST - 1)
        assert (await c.get("/x", headers=who("monthly"))).status_code == 429
        clock.set(DEC_FIRST)
        assert (await c.get("/x", headers=who("monthly"))).status_code == 200
    await mw.flush()
    november = await mw.tracker.get_month("month1", "2026-11")
    assert (november["served"], november["rejected"]) == (3, {"quota-exhausted": 2})
    await mw.aclose()


@pytest.mark.anyio
async def test_daily_quota_resets_at_utc_midnight_and_costs_apply() -> None:
    """A daily quota of 2 is spent by one cost-2 call; cost-0 routes pass; midnight resets it."""
    clock = FakeClock(MID_NOVEMBER)
    mw = UsageMiddleware(ok_app, clock=clock)
    async with client(with_principals(mw, PEOPLE, ROUTES)) as c:
        assert (await c.post("/export", headers=who("daily"))).status_code == 200
        assert (await c.get("/free", headers=who("daily"))).status_code == 200
        r = await c.get("/x", headers=who("daily"))
        assert r.status_code == 429
        assert r.headers["retry-after"] == str(12 * 3600)
        assert '"quota-daily";q=2;w=86400' in r.headers["ratelimit-policy"]
        clock.advance(12 * 3600)
        assert (await c.get("/x", headers=who("daily"))).status_code == 200
    await mw.aclose()


@pytest.mark.anyio
async def test_raised_quota_applies_to_the_next_request() -> None:
    """A key whose Principal.quota is raised (after the key cache TTL) is admitted again."""
    mw = UsageMiddleware(ok_app, clock=FakeClock(MID_NOVEMBER))
    people = dict(PEOPLE)
    async with client(with_principals(mw, people)) as c:
        for _ in range(3):
            await c.get("/x", headers=who("monthly"))
        assert (await c.get("/x", headers=who("monthly"))).status_code == 429
        people["monthly"] = Principal(key_id="month1", quota={"monthly": 5})
        r = await c.get("/x", headers=who("monthly"))
        assert r.status_code == 200 and r.headers["ratelimit"].startswith('"quota";r=1;')
    await mw.aclose()


@pytest.mark.anyio
async def test_owner_quota_from_mapping_and_callable_is_shared_by_keys() -> None:
    """An owner quota (dict or callable) is shared by all the owner's keys and named owner-quota."""
    for owner_quotas in (
        {"acme": {"monthly": 2}},
        lambda o: {"monthly": 2} if o == "acme" else None,
    ):
        mw = UsageMiddleware(ok_app, clock=FakeClock(MID_NOVEMBER), owner_quotas=owner_quotas)
        async with client(with_principals(mw, PEOPLE)) as c:
            assert (await c.get("/x", headers=who("plain"))).status_code == 200
            r = await c.get("/x", headers=who("monthly"))
            assert r.status_code == 200
            assert r.headers["ratelimit-policy"] == (
                '"quota";q=3;w=2592000, "owner-quota";q=2;w=2592000'
            )
            r = await c.get("/x", headers=who("plain"))
            assert r.status_code == 429 and r.json()["violated-policies"] == ["owner-quota"]
            assert (await c.get("/x", headers=who("daily"))).status_code == 200  # no owner
        await mw.aclose()


@pytest.mark.anyio
async def test_keys_without_quota_never_touch_the_store_on_the_hot_path() -> None:
    """Requests of keys without any quota make no quota call; quota'd keys make exactly one each."""
    store = SpyStore()
    mw = UsageMiddleware(ok_app, store=store, clock=FakeClock(MID_NOVEMBER))
    async with client(with_principals(mw, PEOPLE)) as c:
        for _ in range(5):
            await c.get("/x", headers=who("plain"))
        assert store.consumes == 0 and not store._days  # nothing flushed yet
        await c.get("/x", headers=who("monthly"))
        assert store.consumes == 1
    await mw.aclose()


async def app_with_rate_headers(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"ratelimit-policy", b'"read";q=100;w=60'), (b"ratelimit", b'"read";r=99;t=60')]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.anyio
async def test_quota_items_are_appended_to_existing_ratelimit_fields() -> None:
    """Quota items join RateLimit-Policy/RateLimit lists the response already carries."""
    mw = UsageMiddleware(app_with_rate_headers, clock=FakeClock(MID_NOVEMBER))
    async with client(with_principals(mw, PEOPLE)) as c:
        r = await c.get("/x", headers=who("monthly"))
    assert r.headers.get_list("ratelimit-policy") == ['"read";q=100;w=60, "quota";q=3;w=2592000']
    assert r.headers["ratelimit"].startswith('"read";r=99;t=60, "quota";r=2;t=')
    await mw.aclose()


@pytest.mark.anyio
async def test_events_fire_once_per_period_through_the_middleware() -> None:
    """80% and 100% notifications reach on_event once each, however many calls follow (sync ok)."""
    events = Events()
    mw = UsageMiddleware(
        ok_app, clock=FakeClock(MID_NOVEMBER), on_event=events, owner_quotas={"acme": {}}
    )
    people = {"k": Principal(key_id="k5", quota={"monthly": 5})}
    async with client(with_principals(mw, people)) as c:
        statuses = [(await c.get("/x", headers=who("k"))).status_code for _ in range(9)]
    await mw.flush()
    assert statuses == [200] * 5 + [429] * 4
    assert events.kinds() == [EVENT_WARNING, EVENT_EXHAUSTED]
    assert events.calls[0][1]["used"] == 4 and events.calls[1][1]["used"] == 5
    await mw.aclose()


@pytest.mark.anyio
async def test_quota_on_real_redis_survives_a_new_middleware(redis_url: str) -> None:
    """Quota use and counters live in Redis: a restarted middleware keeps refusing the spent key."""
    for expected in ([200, 200, 200, 429], [429]):
        mw = UsageMiddleware(ok_app, store=redis_url, clock=FakeClock(MID_NOVEMBER))
        async with client(with_principals(mw, PEOPLE)) as c:
            got = [(await c.get("/x", headers=who("monthly"))).status_code for _ in expected]
        assert got == expected
        await mw.aclose()
    mw = UsageMiddleware(ok_app, store=redis_url, clock=FakeClock(MID_NOVEMBER))
    (day,) = await mw.get_usage("month1", 1)
    assert (day["served"], day["rejected"]) == (3, {"quota-exhausted": 2})
    await mw.aclose()
