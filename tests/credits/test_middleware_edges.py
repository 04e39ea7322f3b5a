"""CreditsMiddleware edges: a ledger it opens itself (SQLite file), no balance field, websockets
while the credit store is down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from extapi_kit._types import ASGIApp, Message
from extapi_kit.context import get_context
from extapi_kit.credits import CreditLedger, CreditsMiddleware
from tests.credits.support import Events, client, ok_app, with_principals
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

WHO_A = {"x-who": "a"}


async def test_a_ledger_opened_from_a_url_spends_the_shared_file_and_closes_it(
    tmp_path: Path,
) -> None:
    """K7: given a SQLite URL, the layer opens its own ledger with the low threshold and event
    callback given; it spends the balance another ledger set in that file, fires credits.low and
    credits.exhausted once each, and its close writes everything back (visible to a new ledger)."""
    url = f"sqlite:///{tmp_path}/credits.db"
    admin = CreditLedger(url)
    await admin.set(4, key_id="ka")
    await admin.aclose()
    events = Events()
    layer = CreditsMiddleware(ok_app, ledger=url, low_threshold=2, on_event=events)
    assert repr(layer) == f"CreditsMiddleware(ledger={layer.ledger!r})"
    assert "low_threshold=2" in repr(layer)
    async with client(with_principals(layer)) as c:
        answers = [await c.get("/x", headers=WHO_A) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 402]
    assert [r.headers["credits-remaining"] for r in answers] == ["3", "2", "1", "0", "0"]
    await layer.aclose()
    assert events.kinds() == ["credits.low", "credits.exhausted"]
    reader = CreditLedger(url)
    try:
        assert await reader.balance(key_id="ka") == 0
    finally:
        await reader.aclose()


async def test_without_a_header_name_no_balance_field_is_sent() -> None:
    """With ``header=None`` metered requests still spend and a 402 still refuses, but neither
    answer carries a Credits-Remaining field."""
    ledger = CreditLedger()
    await ledger.set(1, key_id="ka")
    layer = CreditsMiddleware(ok_app, ledger=ledger, header=None)
    async with client(with_principals(layer)) as c:
        paid = await c.get("/x", headers=WHO_A)
        refused = await c.get("/x", headers=WHO_A)
    assert paid.status_code == 200 and paid.text == "ok"
    assert refused.status_code == 402
    assert json.loads(refused.content)["credits-remaining"] == 0
    for r in (paid, refused):
        assert "credits-remaining" not in r.headers
    assert await ledger.balance(key_id="ka") == 0
    await layer.aclose()  # a ledger passed in is flushed, not closed
    assert await ledger.balance(key_id="ka") == 0
    await ledger.aclose()


async def _websocket(app: ASGIApp) -> tuple[list[Message], Any]:
    sent: list[Message] = []
    scope: dict[str, Any] = {"type": "websocket", "path": "/ws", "headers": [(b"x-who", b"a")]}

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, get_context(scope)


@pytest.mark.redis
async def test_websocket_with_the_credit_store_down_is_closed_try_again_later(
    private_redis: RedisServer,
) -> None:
    """K8: with the credit store down a metered key's websocket is closed with 1013 (try again
    later) before the app accepts it, and the context records service-unavailable for the audit;
    with failure_mode='open' it is accepted uncharged."""
    ledger = CreditLedger(private_redis.url, metered_ttl=0)
    await ledger.set(100, key_id="ka")
    private_redis.kill()
    try:
        closed_layer = CreditsMiddleware(ok_app, ledger=ledger)
        sent, ctx = await _websocket(with_principals(closed_layer))
        assert [m["type"] for m in sent] == ["websocket.close"]
        assert sent[0]["code"] == 1013
        assert ctx.rejection == "service-unavailable"
        open_layer = CreditsMiddleware(ok_app, ledger=ledger, failure_mode="open")
        sent, ctx = await _websocket(with_principals(open_layer))
        assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
        assert not any(name == b"credits-remaining" for name, _ in sent[0].get("headers", []))
        assert ctx.rejection is None
    finally:
        await ledger.aclose()
