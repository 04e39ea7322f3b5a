"""Credits spent in the rate limiter's Redis script: one round trip, all or nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, get_context
from extapi_kit.credits import CreditLedger, CreditsMiddleware
from extapi_kit.credits.store_redis import RedisCreditStore
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.middleware.usage import UsageMiddleware
from extapi_kit.testing import FakeClock
from extapi_kit.usage import UsageTracker
from tests.credits.support import Events, client, ok_app
from tests.support.redis_server import RedisServer
from tests.usage.support import MID_NOVEMBER

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

KEY = Principal(key_id="fz", owner="acme", quota={"monthly": 1000})


def _as(principal: Principal, app: ASGIApp) -> ASGIApp:
    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            get_context(scope).principal = principal
        await app(scope, receive, send)

    return outer


@pytest.fixture
async def ledger(redis_url: str) -> AsyncIterator[CreditLedger]:
    events = Events()
    led = CreditLedger(RedisCreditStore.from_url(redis_url), low_threshold=1, on_event=events)
    try:
        yield led
    finally:
        await led.aclose()
        await led.store.aclose()


def _stack(
    redis_url: str, ledger: CreditLedger, read: str, tracker: UsageTracker | None = None
) -> tuple[ASGIApp, RateLimitMiddleware]:
    inner: ASGIApp = CreditsMiddleware(ok_app, ledger=ledger)
    if tracker is not None:
        inner = UsageMiddleware(inner, tracker=tracker)
    rl = RateLimitMiddleware(
        inner,
        storage=redis_url,
        read=read,
        quotas=tracker,
        credits=ledger,
        failure_mode="closed",
        deadline=2.0,
    )
    return _as(KEY, rl), rl


async def test_one_round_trip_per_request_with_rate_limit_quota_and_credits(
    redis_url: str, ledger: CreditLedger
) -> None:
    """K6: windows, the quota and the credits of a request cost one Redis command in all."""
    tracker = UsageTracker(redis_url, clock=FakeClock(MID_NOVEMBER))
    await ledger.set(50, owner="acme")
    app, rl = _stack(redis_url, ledger, "1000/minute", tracker)
    try:
        async with client(app) as c:
            await c.get("/warm")  # connects the pipe and loads the script
            pipe = rl.backend.primary.pipe
            before = pipe.commands
            statuses = [(await c.get("/x")).status_code for _ in range(20)]
            r = await c.get("/x")
        assert statuses == [200] * 20
        assert pipe.commands - before == 21
        assert isinstance(ledger.store, RedisCreditStore)
        assert ledger.store.calls == 0  # the credits layer never called its store
        assert r.headers["credits-remaining"] == "28"
        assert await ledger.balance(owner="acme") == 28
        assert (await tracker.quota_used("fz"))["monthly"] == 22
    finally:
        await tracker.aclose()
        await rl.aclose()


async def test_a_rate_limit_refusal_spends_no_credit(redis_url: str, ledger: CreditLedger) -> None:
    """K6: requests the rate limiter refuses (429) leave the credit balance untouched."""
    await ledger.set(10, key_id="fz")
    app, rl = _stack(redis_url, ledger, "3/minute")
    try:
        async with client(app) as c:
            statuses = [(await c.get("/x")).status_code for _ in range(6)]
    finally:
        await rl.aclose()
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert await ledger.balance(key_id="fz") == 7


async def test_a_credit_refusal_spends_no_rate_limit_or_quota(
    redis_url: str, ledger: CreditLedger
) -> None:
    """K6: requests refused for credits (402) cost no rate-limit budget and no quota."""
    tracker = UsageTracker(redis_url, clock=FakeClock(MID_NOVEMBER))
    await ledger.set(2, key_id="fz")
    app, rl = _stack(redis_url, ledger, "5/minute", tracker)
    try:
        async with client(app) as c:
            first = [(await c.get("/x")).status_code for _ in range(6)]
            await ledger.add(10, key_id="fz")
            second = [(await c.get("/x")).status_code for _ in range(4)]
        assert first == [200, 200, 402, 402, 402, 402]
        # 2 of the 5 per minute were spent: 3 more fit, then the window refuses.
        assert second == [200, 200, 200, 429]
        assert await ledger.balance(key_id="fz") == 7
        assert (await tracker.quota_used("fz"))["monthly"] == 5
    finally:
        await tracker.aclose()
        await rl.aclose()


async def test_fused_spends_fire_each_notification_once(
    redis_url: str, ledger: CreditLedger
) -> None:
    """K7: on the fused path too, credits.low and credits.exhausted fire once per crossing."""
    await ledger.set(3, key_id="fz")
    app, rl = _stack(redis_url, ledger, "100/minute")
    try:
        async with client(app) as c:
            for _ in range(8):
                await c.get("/x")
    finally:
        await rl.aclose()
    await ledger.flush()
    events = ledger._on_event
    assert isinstance(events, Events)
    assert events.kinds() == ["credits.low", "credits.exhausted"]


async def test_different_servers_are_not_fused(redis_url: str, ledger: CreditLedger) -> None:
    """A credit store on another Redis database is spent by the credits layer itself."""
    other = CreditLedger(RedisCreditStore.from_url(redis_url.rsplit("/", 1)[0] + "/9"))
    await other.set(5, key_id="fz")
    app, rl = _stack(redis_url, other, "100/minute")
    try:
        async with client(app) as c:
            r = await c.get("/x")
        assert r.headers["credits-remaining"] == "4"
        assert isinstance(other.store, RedisCreditStore)
        assert other.store.calls == 1
    finally:
        await other.clear(key_id="fz")
        await rl.aclose()
        await other.store.aclose()


async def test_redis_down_on_the_fused_path_never_admits_for_free(
    private_redis: RedisServer,
) -> None:
    """K8: with Redis down, the rate limiter fails open in process, but the credits layer
    cannot spend and answers 503 with Retry-After: no metered request passes uncharged."""
    ledger = CreditLedger(RedisCreditStore.from_url(private_redis.url, socket_timeout=1.0))
    await ledger.set(100, key_id="fz")
    inner = CreditsMiddleware(ok_app, ledger=ledger)
    rl = RateLimitMiddleware(
        inner, storage=private_redis.url, credits=ledger, failure_mode="open", deadline=0.5
    )
    try:
        async with client(_as(KEY, rl)) as c:
            assert (await c.get("/x")).headers["credits-remaining"] == "99"
            private_redis.kill()
            r = await c.get("/x")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert rl.backend.degraded  # the rate limiter itself went to its fallback
    finally:
        await rl.aclose()
        await ledger.store.aclose()
