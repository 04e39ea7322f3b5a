"""Two dispatcher processes on one PostgreSQL outbox, one SIGKILLed again and again (W8, P8)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter, defaultdict

import pytest

from extapi_kit.webhooks import DeliveryStatus, WebhookManager, publish_event
from extapi_kit.webhooks.store_postgres import PostgresWebhookStore
from tests.webhooks.receivers import Recorder, serve
from tests.webhooks.test_crash import _start_worker

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.slow]
N_EVENTS = 1000


async def test_two_dispatchers_one_sigkilled_lose_nothing_and_send_once(pg_url: str) -> None:
    """P8 (W8 on PostgreSQL): 1,000 events through two dispatcher processes while one is
    SIGKILLed at least 4 times: 0 lost, a re-delivery keeps its webhook-id, and apart from the
    killed worker's leases each delivery is attempted once (FOR UPDATE SKIP LOCKED)."""
    rng = random.Random(11)
    recorder = Recorder()
    store = PostgresWebhookStore.from_url(pg_url)
    kills = 0
    started = time.monotonic()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True)
        await manager.add_endpoint(base + "/hook")
        steady = await _start_worker(pg_url)

        async def producer() -> None:
            for i in range(N_EVENTS):
                await publish_event(store, "job.done", {"i": i})
                if i % 50 == 0:
                    await asyncio.sleep(0.1)

        producing = asyncio.create_task(producer())
        while kills < 4 or not producing.done():
            victim = await _start_worker(pg_url)
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            kills += 1
            assert time.monotonic() - started < 90, "the test must stay bounded"
        await producing
        for _ in range(300):  # the steady worker drains what is left, expired leases included
            done = await manager.deliveries(status=DeliveryStatus.SUCCEEDED, limit=10_000)
            if len(done) == N_EVENTS:
                break
            await asyncio.sleep(0.1)
        steady.send_signal(signal.SIGTERM)
        assert await steady.wait() == 0
    deliveries = await manager.deliveries(limit=10_000)
    await store.aclose()
    assert kills >= 4
    assert len(deliveries) == N_EVENTS
    assert all(d.status == DeliveryStatus.SUCCEEDED for d in deliveries)
    ids_per_event: dict[str, set[str]] = defaultdict(set)
    complete = [r for r in recorder.requests if r.body.endswith(b"}")]
    for r in complete:
        ids_per_event[json.loads(r.body)["id"]].add(r.headers["webhook-id"])
    assert len(ids_per_event) == N_EVENTS  # 0 lost
    assert all(len(ids) == 1 for ids in ids_per_event.values())
    per_id = Counter(r.headers["webhook-id"] for r in complete)
    duplicates = sum(n - 1 for n in per_id.values())
    print(
        f"P8 postgresql: {kills} kills, {duplicates} duplicates, {time.monotonic() - started:.1f} s"
    )
    assert duplicates <= kills * 16  # at most the killed worker's leased batch per kill
