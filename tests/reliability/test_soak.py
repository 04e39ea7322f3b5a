"""Soak: bounded mixed traffic with rotations and revocations; flat memory, no error logs.

Skipped unless ``EXTAPI_KIT_SOAK=1`` (``nox -s soak``). Duration: ``EXTAPI_KIT_SOAK_SECONDS``
(default 120). RSS of the uvicorn process is read from ``/proc/<pid>/status`` (no psutil).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.reliability._server import serve
from tests.reliability.stack import READ_SCOPE, WRITE_SCOPE, cheap_service

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("EXTAPI_KIT_SOAK") != "1", reason="set EXTAPI_KIT_SOAK=1"),
]

SECONDS = float(os.environ.get("EXTAPI_KIT_SOAK_SECONDS", "120"))
RSS_GROWTH_BOUND_KB = 40 * 1024  # after warm-up; a per-request leak of 1 KiB breaks it quickly


def rss_kb(pid: int) -> int:
    """Return VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.timeout(SECONDS + 120)  # the suite-wide pytest-timeout is 120 s
async def test_soak_mixed_traffic_keeps_memory_flat(tmp_path: Path, redis_url: str) -> None:
    """A6, A7, L1, I1: minutes of mixed reads, writes, replays, bad keys, rotations and
    revocations → only expected statuses, RSS growth under the bound, no ERROR log lines."""
    seconds = SECONDS
    service = cheap_service(redis_url)
    env = {"EXTAPI_REL_KEYS": redis_url, "EXTAPI_REL_REDIS": redis_url}
    env |= {"EXTAPI_REL_READ": "100000/minute", "EXTAPI_REL_WRITE": "100000/minute"}
    env["EXTAPI_REL_FAILURES_PER_IP"] = "100000000"  # all traffic comes from one loopback IP
    keys = [(await service.create(f"k{i}", scopes=[READ_SCOPE, WRITE_SCOPE])) for i in range(8)]
    live = {rec.id: key for rec, key in keys}
    statuses: Counter[int] = Counter()
    rng = random.Random(12)
    with serve(tmp_path, env) as server:
        samples: list[int] = []
        end = time.monotonic() + seconds
        warm = time.monotonic() + min(20.0, seconds / 4)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:

            async def worker(n: int) -> None:
                i = 0
                while time.monotonic() < end:
                    i += 1
                    key = rng.choice(list(live.values()))
                    roll = rng.random()
                    if roll < 0.6:
                        r = await c.get(f"/api/v1/items/{i}", headers={"X-API-Key": key})
                    elif roll < 0.9:
                        idem = f"w{n}-{i % 50}"  # replays and new writes
                        r = await c.post(
                            "/api/v1/orders",
                            json={},
                            headers={"X-API-Key": key, "Idempotency-Key": idem},
                        )
                    else:
                        r = await c.get("/api/v1/items/1", headers={"X-API-Key": key[:-3] + "abc"})
                    statuses[r.status_code] += 1

            async def churn() -> None:
                while time.monotonic() < end:
                    await asyncio.sleep(2)
                    key_id = rng.choice(list(live))
                    if rng.random() < 0.5:
                        rec, new = await service.rotate(key_id, grace=1)
                        live[rec.id] = new
                    else:
                        await service.revoke(key_id)
                        rec, new = await service.create("fresh", scopes=[READ_SCOPE, WRITE_SCOPE])
                        live[rec.id] = new
                    del live[key_id]

            async def sample() -> None:
                while time.monotonic() < end:
                    await asyncio.sleep(1)
                    if time.monotonic() > warm:
                        samples.append(rss_kb(server.proc.pid))

            await asyncio.gather(*(worker(n) for n in range(8)), churn(), sample())
        log = server.log.read_text()
    await service.aclose()
    assert set(statuses) <= {200, 201, 401, 409, 429}, statuses
    assert sum(statuses.values()) > seconds * 10
    assert samples and max(samples) - samples[0] < RSS_GROWTH_BOUND_KB, (samples[0], max(samples))
    assert "ERROR" not in log and "Traceback" not in log, log[-2000:]
    print(
        f"soak: {sum(statuses.values())} requests {dict(statuses)}; "
        f"RSS {samples[0]}->{samples[-1]} KiB"
    )
