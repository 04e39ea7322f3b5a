"""The Redis webhook store and the dispatcher's poll loop across store failures (W13)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import pytest

from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.webhooks import WebhookDispatcher, WebhookManager, webhook_store_from_url
from extapi_kit.webhooks.store import Claimed, WebhookStore
from extapi_kit.webhooks.store_memory import MemoryWebhookStore
from tests.support.redis_server import RedisServer
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


async def test_redis_restarted_without_data_resumes_delivery(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """W13: after Redis restarts without its data under a running dispatcher, the consumer group
    is recreated and the next event is delivered; store failures log one warning, no traceback."""
    store = webhook_store_from_url(private_redis.url)
    recorder = Recorder()
    try:
        async with serve(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True)
            await manager.add_endpoint(base + "/before")
            dispatcher = WebhookDispatcher(
                store, allow_loopback=True, poll_interval=0.05, endpoint_cache_ttl=0.05
            )
            with caplog.at_level(logging.INFO, logger="extapi_kit.webhooks"):
                async with dispatcher:
                    await dispatcher.publish("job.completed", {"n": 1})
                    await recorder.wait_for(1)
                    # A restart without persistence: the stream, its group and the endpoints go.
                    await asyncio.to_thread(private_redis.restart)
                    await asyncio.sleep(0.3)  # polls run against the empty server
                    await manager.add_endpoint(base + "/after")  # the operator re-registers
                    await asyncio.sleep(0.1)  # past the endpoint cache TTL
                    await dispatcher.publish("job.completed", {"n": 2})
                    await recorder.wait_for(2, within=10)
                    assert await dispatcher.ping()
            assert [r.path for r in recorder.requests] == ["/before", "/after"]
            [after] = await manager.deliveries()
            assert after.attempts == 1
        assert not [r for r in caplog.records if r.exc_info], "no traceback per poll"
        polls = [r for r in caplog.records if "polling the store failed" in r.getMessage()]
        assert len(polls) <= 1
    finally:
        await store.aclose()


class _FlakyStore(MemoryWebhookStore):
    """A memory store whose ``claim`` fails while ``down`` is set."""

    down = True

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[Claimed]:
        if self.down:
            raise StoreUnavailableError("redis unavailable: ConnectionError")
        return await super().claim(
            owner=owner, now=now, lease_seconds=lease_seconds, limit=limit, exclude=exclude
        )


async def test_poll_failures_log_one_warning_per_interval_and_fail_ping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """W13: a store failing every poll logs one warning naming the error class per interval (no
    traceback), the dispatcher's ping reports the broken loop, and recovery is logged."""
    store: Any = _FlakyStore()
    typed: WebhookStore = store
    dispatcher = WebhookDispatcher(typed, poll_interval=0.01)
    with caplog.at_level(logging.INFO, logger="extapi_kit.webhooks"):
        async with dispatcher:
            await asyncio.sleep(0.3)  # about 30 failed polls
            assert not await dispatcher.ping()
            assert await store.ping(), "the store itself answers: only the loop is broken"
            store.down = False
            await asyncio.sleep(0.1)
            assert await dispatcher.ping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "StoreUnavailableError" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]
    assert any("recovered" in r.getMessage() for r in caplog.records)
