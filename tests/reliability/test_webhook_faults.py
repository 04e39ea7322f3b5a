"""Webhook dispatcher under Redis faults: paused and slowed Redis lose no event and double none."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from extapi_kit.webhooks import DeliveryStatus, WebhookDispatcher, WebhookManager
from extapi_kit.webhooks.store import webhook_store_from_url
from tests.support.redis_server import RedisServer
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


async def test_paused_redis_delays_but_loses_no_webhook(private_redis: RedisServer) -> None:
    """W8/L9: Redis SIGSTOPped mid-dispatch → the dispatcher survives, every event is delivered
    once Redis resumes, and every duplicate (if any) carries the same webhook-id."""
    recorder = Recorder()
    url = private_redis.url
    admin_store = webhook_store_from_url(url)
    worker_store = webhook_store_from_url(url)
    async with serve(recorder) as base:
        manager = WebhookManager(admin_store, allow_loopback=True)
        await manager.add_endpoint(base + "/hook")
        dispatcher = WebhookDispatcher(
            worker_store, allow_loopback=True, owner="w", concurrency=8, poll_interval=0.05
        )
        async with dispatcher:
            for i in range(40):
                await dispatcher.publish("job.completed", {"i": i})
            private_redis.pause()
            await asyncio.sleep(1.5)  # the dispatcher's Redis calls fail or time out meanwhile
            private_redis.resume()
            for i in range(40, 60):
                await dispatcher.publish("job.completed", {"i": i})
            await recorder.wait_for(60, within=30)
            await asyncio.sleep(0.3)
        ids = Counter(r.headers["webhook-id"] for r in recorder.requests)
        assert len(ids) == 60  # nothing lost
        bodies = {r.body for r in recorder.requests}
        assert len(bodies) == 60
        deliveries = await manager.deliveries(limit=1000)
        assert len(deliveries) == 60
        assert all(d.status == DeliveryStatus.SUCCEEDED for d in deliveries)
    await admin_store.aclose()
    await worker_store.aclose()
