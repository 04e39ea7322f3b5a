"""CreditsMiddleware over real ASGI: spend, 402 problem, header, events, store failure."""

from __future__ import annotations

import json

import pytest

from extapi_kit.credits import CreditLedger, CreditsMiddleware
from extapi_kit.exceptions import ConfigurationError
from tests.credits.support import Events, client, ok_app, with_principals
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

WHO_A = {"x-who": "a"}


def _stack(ledger: CreditLedger, **options: object) -> object:
    return with_principals(CreditsMiddleware(ok_app, ledger=ledger, **options))  # type: ignore[arg-type]


async def test_unmetered_keys_pass_without_the_field() -> None:
    """A key without any balance is not limited and gets no Credits-Remaining field."""
    ledger = CreditLedger()
    async with client(_stack(ledger)) as c:  # type: ignore[arg-type]
        r = await c.get("/x", headers=WHO_A)
        anonymous = await c.get("/x")
    assert r.status_code == 200 and "credits-remaining" not in r.headers
    assert anonymous.status_code == 200


async def test_each_request_spends_its_route_cost_and_shows_the_rest() -> None:
    """GET costs 1, the /render route costs 5; every answer carries the balance left."""
    ledger = CreditLedger()
    await ledger.set(12, key_id="ka")
    async with client(_stack(ledger)) as c:  # type: ignore[arg-type]
        one = await c.get("/x", headers=WHO_A)
        five = await c.post("/render", headers=WHO_A)
        again = await c.post("/render", headers=WHO_A)
        last = await c.get("/x", headers=WHO_A)
    assert [r.status_code for r in (one, five, again, last)] == [200] * 4
    assert [r.headers["credits-remaining"] for r in (one, five, again, last)] == [
        "11",
        "6",
        "1",
        "0",
    ]
    assert await ledger.balance(key_id="ka") == 0


async def test_an_empty_balance_answers_402_problem_without_retry_after() -> None:
    """An exhausted key gets 402 credits-exhausted (stable type), no Retry-After, no charge."""
    ledger = CreditLedger()
    await ledger.set(3, key_id="ka")
    async with client(_stack(ledger)) as c:  # type: ignore[arg-type]
        r = await c.post("/render", headers=WHO_A)
    assert r.status_code == 402
    assert r.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in r.headers
    assert r.headers["credits-remaining"] == "3"
    body = json.loads(r.content)
    assert body["type"] == "https://extapi-kit.dev/problems/credits-exhausted"
    assert body["title"] == "Credits exhausted"
    assert (body["credits-remaining"], body["cost"], body["balance"]) == (3, 5, "key")
    assert await ledger.balance(key_id="ka") == 3


async def test_an_owner_balance_is_shared_by_its_keys() -> None:
    """Two keys of one owner spend one owner balance; the refusal names the owner's."""
    ledger = CreditLedger()
    await ledger.set(2, owner="acme")
    async with client(_stack(ledger)) as c:  # type: ignore[arg-type]
        a = await c.get("/x", headers=WHO_A)
        b = await c.get("/x", headers={"x-who": "b"})
        refused = await c.get("/x", headers=WHO_A)
        solo = await c.get("/x", headers={"x-who": "solo"})
    assert [a.status_code, b.status_code, refused.status_code] == [200, 200, 402]
    assert json.loads(refused.content)["balance"] == "owner"
    assert solo.status_code == 200


async def test_low_and_exhausted_fire_once_per_crossing_and_top_up_rearms() -> None:
    """K7: credits.low and credits.exhausted fire once per crossing, not once per request."""
    events = Events()
    ledger = CreditLedger(low_threshold=2, on_event=events)
    await ledger.set(4, key_id="ka")
    async with client(_stack(ledger)) as c:  # type: ignore[arg-type]
        for _ in range(10):
            await c.get("/x", headers=WHO_A)
        await ledger.flush()
        assert events.kinds() == ["credits.low", "credits.exhausted"]
        low = events.calls[0][1]
        assert (low["key_id"], low["scope"], low["remaining"], low["threshold"]) == (
            "ka",
            "key",
            2,
            2,
        )
        await ledger.add(3, key_id="ka", reason="top-up")
        for _ in range(10):
            await c.get("/x", headers=WHO_A)
        await ledger.flush()
    assert events.kinds() == ["credits.low", "credits.exhausted"] * 2


async def test_a_refused_cost_marks_exhausted_once() -> None:
    """K7: a balance that cannot pay a route's cost fires credits.exhausted once, not per try."""
    events = Events()
    ledger = CreditLedger(low_threshold=0, on_event=events)
    await ledger.set(3, key_id="ka")
    async with client(_stack(ledger)) as c:  # type: ignore[arg-type]
        statuses = [(await c.post("/render", headers=WHO_A)).status_code for _ in range(4)]
    await ledger.flush()
    assert statuses == [402] * 4
    assert events.kinds() == ["credits.exhausted"]
    assert events.calls[0][1]["cost"] == 5


async def test_websocket_of_an_exhausted_key_is_closed() -> None:
    """A websocket of a key without credits is closed with 1008 before the app accepts it."""
    ledger = CreditLedger()
    await ledger.set(0, key_id="ka")
    app = _stack(ledger)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [(b"x-who", b"a")]}
    await app(scope, receive, send)  # type: ignore[operator]
    assert sent[-1]["type"] == "websocket.close" and sent[-1]["code"] == 1008


@pytest.mark.redis
async def test_a_dead_store_refuses_metered_requests_with_503(
    private_redis: RedisServer,
) -> None:
    """K8: a credit store that is down never gives free use: 503 with Retry-After."""
    ledger = CreditLedger(private_redis.url, metered_ttl=0)
    await ledger.set(100, key_id="ka")
    private_redis.kill()
    try:
        async with client(_stack(ledger, retry_after=3)) as c:  # type: ignore[arg-type]
            r = await c.get("/x", headers=WHO_A)
    finally:
        await ledger.aclose()
    assert r.status_code == 503
    assert r.headers["retry-after"] == "3"
    body = json.loads(r.content)
    assert body["type"].endswith("/service-unavailable")
    assert "redis" not in r.text.lower()


@pytest.mark.redis
async def test_failure_mode_open_admits_uncharged(private_redis: RedisServer) -> None:
    """K8: failure_mode='open' is an explicit choice: the request passes, logged."""
    ledger = CreditLedger(private_redis.url, metered_ttl=0)
    await ledger.set(100, key_id="ka")
    private_redis.kill()
    try:
        stack = _stack(ledger, failure_mode="open")
        async with client(stack) as c:  # type: ignore[arg-type]
            r = await c.get("/x", headers=WHO_A)
    finally:
        await ledger.aclose()
    assert r.status_code == 200 and "credits-remaining" not in r.headers


async def test_unmetered_keys_are_remembered_on_a_shared_store(tmp_path: object) -> None:
    """A key found without a balance costs no store call within metered_ttl; a top-up via the
    ledger applies at once."""
    from extapi_kit.testing import FakeClock

    clock = FakeClock(1000.0)
    ledger = CreditLedger(f"sqlite:///{tmp_path}/c.db", metered_ttl=5.0, clock=clock)
    try:
        assert await ledger.spend("ka", "acme", 1) is None
        await ledger.store.change("k:ka", action="set", amount=1, actor="t", reason=None, at=1)
        assert await ledger.spend("ka", "acme", 1) is None  # remembered as unmetered
        clock.advance(5.1)
        first = await ledger.spend("ka", "acme", 1)
        assert first is not None and first.allowed
        await ledger.set(0, key_id="kz")
        assert await ledger.spend("kz", None, 1) is not None
    finally:
        await ledger.aclose()


def test_bad_configuration_is_refused() -> None:
    """Unknown failure modes, bad thresholds and mixed ledger options are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        CreditsMiddleware(ok_app, failure_mode="maybe")
    with pytest.raises(ConfigurationError):
        CreditsMiddleware(ok_app, retry_after=0)
    with pytest.raises(ConfigurationError):
        CreditsMiddleware(ok_app, ledger=CreditLedger(), low_threshold=3)
    with pytest.raises(ConfigurationError):
        CreditLedger(low_threshold=-1)
