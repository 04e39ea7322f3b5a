"""A test ping is recorded as a delivery marked ``test`` on every backend (issue 18 §4)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extapi_kit.exceptions import ConflictError
from extapi_kit.webhooks import DeliveryStatus, WebhookManager, WebhookStore, webhook_store_from_url
from extapi_kit.webhooks.store_sqlite import SQLiteWebhookStore
from tests.webhooks.receivers import failing, ok, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(any_contract_store_url)
    yield s
    await s.aclose()


async def test_a_test_ping_lists_as_a_test_delivery_with_its_attempt(store: WebhookStore) -> None:
    """W16: send_test records the ping as one delivery marked test (succeeded or failed, one
    manual attempt, the webhook-id sent); no dispatcher claims it and it is not replayed."""
    manager = WebhookManager(store, allow_loopback=True)
    async with serve(ok) as good, serve(failing(500)) as bad:
        up = await manager.add_endpoint(good + "/hook")
        down = await manager.add_endpoint(bad + "/hook")
        assert (await manager.send_test(up.id)).ok
        assert not (await manager.send_test(down.id)).ok
    (sent,) = await manager.deliveries(endpoint_id=up.id)
    (refused,) = await manager.deliveries(endpoint_id=down.id)
    assert sent.test and sent.status == DeliveryStatus.SUCCEEDED and sent.attempts == 1
    assert refused.test and refused.status == DeliveryStatus.FAILED and refused.last_error == "500"
    (attempt,) = await manager.attempts(sent.id)
    assert attempt.manual and attempt.status == 204
    assert [d.id for d in await manager.deliveries(status="failed")] == [refused.id]
    claimed = await store.claim(owner="w", now=sent.created_at + 3600, lease_seconds=30, limit=10)
    assert claimed == []
    with pytest.raises(ConflictError):
        await manager.replay_delivery(sent.id)
    assert await manager.replay_failed(down.id, since=0) == 0


async def test_an_older_sqlite_file_gains_the_test_column(tmp_path: Path) -> None:
    """W16: a webhook database written before test pings were recorded is migrated in place;
    its deliveries read back as not tests."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE extapi_webhook_deliveries (id TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
        " endpoint_id TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at REAL NOT NULL, lease_until REAL, lease_owner TEXT,"
        " created_at REAL NOT NULL, last_error TEXT, due_at REAL NOT NULL);"
        "INSERT INTO extapi_webhook_deliveries VALUES"
        " ('msg_1', 'evt_1', 'ep_1', 'succeeded', 1, 0, NULL, NULL, 5, NULL, 0);"
    )
    conn.commit()
    conn.close()
    store = SQLiteWebhookStore(str(path))
    try:
        (old,) = await store.list_deliveries()
        assert old.id == "msg_1" and old.test is False
    finally:
        await store.aclose()
