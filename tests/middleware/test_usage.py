"""UsageMiddleware: counting by class and outcome, anonymous, lifespan, websocket, failures."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings
from extapi_kit.middleware.usage import UsageMiddleware
from extapi_kit.testing import FakeClock
from extapi_kit.usage.store import QuotaCheck
from extapi_kit.usage.store_memory import MemoryUsageStore
from tests.usage.support import MID_NOVEMBER, client, ok_app, who, with_principals

PLAIN = Principal(key_id="plain1", owner="acme")
MONTHLY = Principal(key_id="month1", owner="acme", quota={"monthly": 3})
DAILY = Principal(key_id="day1", quota={"daily": 2})
PEOPLE = {"plain": PLAIN, "monthly": MONTHLY, "daily": DAILY}
ROUTES = {
    "/search": RouteSettings("/search", method="POST", rate_class="read", cost=1),
    "/export": RouteSettings("/export", method="POST", cost=2),
    "/free": RouteSettings("/free", cost=0),
}


@pytest.mark.anyio
async def test_counts_by_class_and_outcome() -> None:
    """Requests count by route class or method and by served / errors / rejected:<slug>."""
    mw = UsageMiddleware(ok_app, clock=FakeClock(MID_NOVEMBER))
    async with client(with_principals(mw, PEOPLE, ROUTES)) as c:
        await c.get("/a", headers=who("plain"))
        await c.post("/a", headers=who("plain"))
        await c.post("/search", headers=who("plain"))
        await c.get("/missing", headers=who("plain"))
        await c.get("/conflict", headers=who("plain"))
        await c.get("/anon")
    await mw.flush()
    (day,) = await mw.get_usage("plain1", days=1)
    assert (day["date"], day["read"], day["write"], day["total"]) == ("2026-11-15", 4, 1, 5)
    assert (day["served"], day["errors"]) == (3, 1)
    assert day["rejected"] == {"idempotency-key-in-use": 1}
    assert (await mw.tracker.get_owner_month("acme"))["total"] == 5
    assert (await mw.get_usage("anonymous", days=1))[0]["total"] == 0
    await mw.aclose()


@pytest.mark.anyio
async def test_anonymous_requests_count_when_enabled() -> None:
    """With count_anonymous, requests without a principal count under "anonymous"."""
    mw = UsageMiddleware(ok_app, clock=FakeClock(MID_NOVEMBER), count_anonymous=True)
    async with client(with_principals(mw, PEOPLE)) as c:
        assert (await c.get("/x")).status_code == 200
    await mw.flush()
    assert (await mw.get_usage("anonymous", days=1))[0]["served"] == 1
    await mw.aclose()


@pytest.mark.anyio
async def test_lifespan_shutdown_flushes_pending_counts() -> None:
    """Lifespan messages pass through; on shutdown the pending counts reach the store (M5)."""
    store = MemoryUsageStore()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                seen.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await ok_app(scope, receive, send)

    mw = UsageMiddleware(app, store=store, clock=FakeClock(MID_NOVEMBER), flush_interval=3600)
    wrapped = with_principals(mw, PEOPLE)
    async with client(wrapped) as c:
        await c.get("/x", headers=who("plain"))
    assert not store._days
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await wrapped({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (await store.days("k:plain1", ["2026-11-15"]))["2026-11-15"]["served"] == 1
    await mw.aclose()


@pytest.mark.anyio
async def test_websocket_over_quota_is_closed_before_accept() -> None:
    """A websocket of an exhausted key is closed with 1008 and counted as quota-exhausted (Z7)."""
    mw = UsageMiddleware(ok_app, clock=FakeClock(MID_NOVEMBER))
    app = with_principals(mw, {"d": Principal(key_id="ws1", quota={"daily": 1})})
    for expected in ("websocket.accept", "websocket.close"):
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "headers": [(b"x-who", b"d")]}
        await app(scope, receive, send)
        assert sent[0]["type"] == expected
    assert sent[0]["code"] == 1008
    await mw.flush()
    (day,) = await mw.get_usage("ws1", 1)
    assert (day["served"], day["rejected"]) == (1, {"quota-exhausted": 1})
    await mw.aclose()


class DownStore(MemoryUsageStore):
    """A store whose quota charge always fails."""

    async def consume(self, checks: Sequence[QuotaCheck], cost: int) -> tuple[bool, list[int]]:
        from extapi_kit.exceptions import StoreUnavailableError

        raise StoreUnavailableError("down")


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 503)])
async def test_quota_store_failure_follows_the_failure_mode(mode: str, status: int) -> None:
    """When the quota charge fails: open admits (logged), closed answers 503 + Retry-After (L8)."""
    mw = UsageMiddleware(
        ok_app, store=DownStore(), clock=FakeClock(MID_NOVEMBER), failure_mode=mode
    )
    async with client(with_principals(mw, PEOPLE)) as c:
        r = await c.get("/x", headers=who("monthly"))
    assert r.status_code == status
    assert "ratelimit-policy" not in r.headers
    if status == 503:
        assert r.headers["retry-after"] == "1"
    await mw.aclose()


def test_bad_failure_mode_is_refused() -> None:
    """An unknown failure_mode is a configuration error at construction."""
    from extapi_kit.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError):
        UsageMiddleware(ok_app, failure_mode="maybe")


def test_repr_names_the_store() -> None:
    """The repr names the store and nothing secret."""
    assert "MemoryUsageStore" in repr(UsageMiddleware(ok_app))
