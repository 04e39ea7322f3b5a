"""The event's payload version travels inside the signed envelope, on every backend."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import standardwebhooks
from pydantic import BaseModel

from extapi_kit.webhooks import (
    EventCatalogue,
    WebhookDispatcher,
    WebhookManager,
    WebhookStore,
    webhook_store_from_url,
)
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


class JobDone(BaseModel):
    job_id: str


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(store_url)
    yield s
    await s.aclose()


async def test_catalogue_version_is_in_the_signed_envelope(store: WebhookStore) -> None:
    """W15: a receiver reads the catalogue's version from the signed body (version "1" without
    a catalogue type), after the event went through the store."""
    catalogue = EventCatalogue(strict=False)
    catalogue.register("job.completed", "A job finished", schema=JobDone, version="2")
    recorder = Recorder()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True)
        ep = await manager.add_endpoint(base + "/hook")
        dispatcher = WebhookDispatcher(
            store, catalogue=catalogue, allow_loopback=True, endpoint_cache_ttl=0
        )
        event = await dispatcher.publish("job.completed", {"job_id": "j1"})
        await dispatcher.publish("other.thing", {"x": 1})
        await dispatcher.run_until_idle()
    assert (await store.get_event(event.id)).version == "2"
    hook = standardwebhooks.Webhook(ep.secrets[0].value)
    bodies = {}
    for request in recorder.requests:
        payload = hook.verify(request.body, request.headers)
        bodies[payload["type"]] = payload
    assert bodies["job.completed"]["version"] == "2"
    assert bodies["job.completed"]["data"] == {"job_id": "j1"}
    assert bodies["other.thing"]["version"] == "1"


async def test_sqlite_events_written_before_versions_read_as_version_1(tmp_path: Path) -> None:
    """W15: an events table without the version column is migrated; its events read as "1"."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE extapi_webhook_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, "
            "timestamp REAL NOT NULL, data TEXT NOT NULL, resources TEXT)"
        )
        conn.execute(
            "INSERT INTO extapi_webhook_events VALUES ('evt_old', 'job.done', 1.0, ?, NULL)",
            (json.dumps({"a": 1}),),
        )
    store = webhook_store_from_url(f"sqlite:///{path}")
    try:
        old = await store.get_event("evt_old")
    finally:
        await store.aclose()
    assert old.version == "1" and old.envelope()["version"] == "1"
