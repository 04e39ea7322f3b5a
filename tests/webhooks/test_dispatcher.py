"""The dispatcher end to end against real uvicorn receivers: interop, fairness, scale-out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.webhooks import (
    DeliveryStatus,
    WebhookDispatcher,
    WebhookManager,
    WebhookStore,
    webhook_store_from_url,
)
from extapi_kit.webhooks.sender import WebhookSender
from extapi_kit.webhooks.ssrf import URLGuard
from tests.webhooks.receivers import Recorder, hang_after_headers, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(f"sqlite:///{tmp_path}/wh.db")
    yield s
    await s.aclose()


async def _succeeded(manager: WebhookManager, endpoint_id: str, n: int) -> bool:
    """Wait (bounded) until ``n`` deliveries of the endpoint succeeded."""
    for _ in range(200):
        done = await manager.deliveries(endpoint_id=endpoint_id, status=DeliveryStatus.SUCCEEDED)
        if len(done) >= n:
            return len(done) == n
        await asyncio.sleep(0.02)
    return False


async def test_publish_delivers_signed_payload_verifiable_by_standardwebhooks(
    store_url: str,
) -> None:
    """Every backend: a published event arrives once, signed so `standardwebhooks` verifies it."""
    store = webhook_store_from_url(store_url)
    recorder = Recorder()
    try:
        async with serve(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True)
            ep = await manager.add_endpoint(base + "/hook", event_types=["job.completed"])
            other = await manager.add_endpoint(base + "/other", event_types=["asset.approved"])
            async with WebhookDispatcher(store, allow_loopback=True) as dispatcher:
                event = await dispatcher.publish("job.completed", {"job": "j1", "name": "Zoë"})
                await recorder.wait_for(1)
            req = recorder.requests[0]
            assert req.path == "/hook"
            payload = standardwebhooks.Webhook(ep.secrets[0].value).verify(req.body, req.headers)
            assert payload["type"] == "job.completed" and payload["data"]["name"] == "Zoë"
            assert payload["id"] == event.id and payload["timestamp"].endswith("Z")
            [delivery] = await manager.deliveries(endpoint_id=ep.id)
            assert req.headers["webhook-id"] == delivery.id
            assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 1
            [attempt] = await manager.attempts(delivery.id)
            assert attempt.status == 200 and attempt.error is None
            assert await manager.deliveries(endpoint_id=other.id) == []
    finally:
        await store.aclose()


async def test_rotation_sends_both_signatures(store: WebhookStore) -> None:
    """During a rotation's grace period the old and the new secret both verify the same request."""
    recorder = Recorder()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True)
        ep = await manager.add_endpoint(base + "/hook")
        new_secret = await manager.rotate_secret(ep.id, grace=3600)
        async with WebhookDispatcher(store, allow_loopback=True) as dispatcher:
            await dispatcher.publish("a", {"x": 1})
            await recorder.wait_for(1)
    req = recorder.requests[0]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    for secret in (ep.secrets[0].value, new_secret):
        standardwebhooks.Webhook(secret).verify(req.body, req.headers)
    rotated = await manager.get_endpoint(ep.id)
    assert "whsec_" not in repr(rotated) and len(rotated.secrets) == 2


async def test_hung_endpoint_does_not_delay_a_healthy_one(store: WebhookStore) -> None:
    """A hanging endpoint holds only its own slots: the healthy one gets everything meanwhile."""
    recorder = Recorder()
    async with serve(recorder) as good, serve(hang_after_headers) as bad:
        manager = WebhookManager(store, allow_loopback=True)
        hung = await manager.add_endpoint(bad + "/hang")
        healthy = await manager.add_endpoint(good + "/ok")
        sender = WebhookSender(guard=URLGuard(allow_loopback=True), timeout=30)
        dispatcher = WebhookDispatcher(
            store, sender=sender, concurrency=8, per_endpoint_concurrency=2
        )
        async with dispatcher:
            for i in range(40):
                await dispatcher.publish("tick", {"i": i})
            await recorder.wait_for(40, within=20)
            # Every healthy delivery succeeded while no attempt to the hung endpoint had ended.
            assert await manager.deliveries(endpoint_id=hung.id, status=DeliveryStatus.FAILED) == []
            hung_attempts = [await manager.attempts(d.id) for d in await manager.deliveries(
                endpoint_id=hung.id)]  # fmt: skip
            assert all(a == [] for a in hung_attempts)
            assert await _succeeded(manager, healthy.id, 40)
            await dispatcher.stop(grace=0.1)
        await sender.aclose()
    # Graceful stop released the hung leases: they are pending again, nothing was lost.
    left = await manager.deliveries(endpoint_id=hung.id)
    assert len(left) == 40 and all(d.status == DeliveryStatus.PENDING for d in left)
    assert all(d.lease_owner is None for d in left)


@pytest.mark.redis
async def test_two_dispatchers_on_one_redis_make_each_attempt_once(redis_url: str) -> None:
    """Two dispatchers sharing one Redis stream deliver every event exactly once between them."""
    recorder = Recorder()
    stores = [webhook_store_from_url(redis_url) for _ in range(3)]
    async with serve(recorder) as base:
        manager = WebhookManager(stores[0], allow_loopback=True)
        for path in ("/a", "/b"):
            await manager.add_endpoint(base + path)
        d1 = WebhookDispatcher(stores[1], allow_loopback=True, owner="one", concurrency=8)
        d2 = WebhookDispatcher(stores[2], allow_loopback=True, owner="two", concurrency=8)
        async with d1, d2:
            for i in range(100):
                await (d1 if i % 2 else d2).publish("e", {"i": i})
            await recorder.wait_for(200, within=30)
            await asyncio.sleep(0.3)  # let any duplicate show up before counting
        ids = Counter(r.headers["webhook-id"] for r in recorder.requests)
        assert len(ids) == 200 and set(ids.values()) == {1}
        deliveries = await manager.deliveries(limit=1000)
        assert all(d.status == DeliveryStatus.SUCCEEDED and d.attempts == 1 for d in deliveries)
        total = sum([len(await manager.attempts(d.id)) for d in deliveries])
        assert total == 200
    for s in stores:
        await s.aclose()


async def test_lifespan_wrapper_starts_and_stops_the_dispatcher(store: WebhookStore) -> None:
    """`dispatcher.lifespan(app)` runs the dispatcher between lifespan startup and shutdown."""
    recorder = Recorder()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async with serve(recorder) as base:
        await WebhookManager(store, allow_loopback=True).add_endpoint(base + "/h")
        dispatcher = WebhookDispatcher(store, allow_loopback=True)
        wrapped = dispatcher.lifespan(app)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[dict[str, Any]] = []

        started = asyncio.Event()

        async def send(message: Any) -> None:
            sent.append(message)
            started.set()

        async def run() -> None:
            await wrapped({"type": "lifespan"}, inbox.get, send)

        task = asyncio.create_task(run())
        await inbox.put({"type": "lifespan.startup"})
        await started.wait()
        await dispatcher.publish("x", {})
        await recorder.wait_for(1)
        await inbox.put({"type": "lifespan.shutdown"})
        await task
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    assert dispatcher._loop_task is None
