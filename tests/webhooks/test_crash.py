"""Crash safety of the outbox: a dispatcher process SIGKILLed again and again loses nothing (W8)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from extapi_kit.webhooks import (
    DeliveryStatus,
    WebhookManager,
    publish_event,
    webhook_store_from_url,
)
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


async def _start_worker(url: str) -> asyncio.subprocess.Process:
    """Start a worker and return once its SIGTERM handler is installed (it prints a line then);
    a SIGTERM sent earlier would hit the interpreter's default action, not the graceful stop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.webhooks.crash_worker",
        url,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
    return proc


@pytest.mark.parametrize(("backend", "n_events"), [("sqlite", 1000), ("redis", 300)])
async def test_sigkilled_dispatcher_loses_nothing(
    backend: str, n_events: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Kill -9 during N events: every event arrives, duplicates keep their webhook-id (W8)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/outbox.db"
    else:
        url = str(request.getfixturevalue("redis_url"))
    rng = random.Random(7)
    recorder = Recorder()
    store = webhook_store_from_url(url)
    kills = 0
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True)
        await manager.add_endpoint(base + "/hook")

        async def producer() -> None:
            for i in range(n_events):
                await publish_event(store, "job.done", {"i": i})
                if i % 100 == 0:
                    await asyncio.sleep(0.2)

        producing = asyncio.create_task(producer())
        for _ in range(40):
            worker = await _start_worker(url)
            await asyncio.sleep(rng.uniform(0.7, 1.5))
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            kills += 1
            done = await manager.deliveries(status=DeliveryStatus.SUCCEEDED, limit=10_000)
            if producing.done() and kills >= 4 and done:
                break
        await producing
        # One last worker drains what is left (expired leases included), then stops gracefully.
        worker = await _start_worker(url)
        for _ in range(600):
            done = await manager.deliveries(status=DeliveryStatus.SUCCEEDED, limit=10_000)
            if len(done) == n_events:
                break
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert await worker.wait() == 0
    all_deliveries = await manager.deliveries(limit=10_000)
    await store.aclose()
    assert kills >= 3
    assert len(all_deliveries) == n_events
    assert all(d.status == DeliveryStatus.SUCCEEDED for d in all_deliveries)
    ids_per_event: dict[str, set[str]] = defaultdict(set)
    complete = [r for r in recorder.requests if r.body.endswith(b"}")]  # not cut by a kill
    for r in complete:
        ids_per_event[json.loads(r.body)["id"]].add(r.headers["webhook-id"])
    assert len(ids_per_event) == n_events  # 0 lost
    assert all(len(ids) == 1 for ids in ids_per_event.values())  # duplicates: same webhook-id
    duplicates = len(complete) - n_events
    print(f"W8 {url.split(':')[0]}: {kills} kills, {duplicates} duplicates")
    assert duplicates <= kills * 16  # at most one lease batch per crash
