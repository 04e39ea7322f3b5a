"""Exactness under concurrency: N concurrent at L admit exactly L (L1, L2), memory and Redis,
one process and two OS processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from tests.ratelimit.helpers import client, ok_app

STRATEGIES = ["fixed-window", "sliding-window", "moving-window"]
ROOT = Path(__file__).resolve().parents[2]


async def _burst(mw: RateLimitMiddleware, n: int = 300) -> list[int]:
    async with client(mw) as c:
        responses = await asyncio.gather(*(c.get("/") for _ in range(n)))
    return [r.status_code for r in responses]


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_300_concurrent_at_50_admit_exactly_50_memory(strategy: str) -> None:
    """Memory storage: 300 concurrent requests at L=50 give exactly 50x200 and 250x429 (L1)."""
    mw = RateLimitMiddleware(ok_app, read="50/minute;1000/hour", strategy=strategy)
    codes = await _burst(mw)
    assert codes.count(200) == 50 and codes.count(429) == 250


@pytest.mark.anyio
@pytest.mark.redis
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_300_concurrent_at_50_admit_exactly_50_redis(strategy: str, redis_url: str) -> None:
    """Redis: one atomic script per request, so exactly 50 of 300 concurrent pass (L1, L2)."""
    mw = RateLimitMiddleware(
        ok_app, storage=redis_url, read="50/minute;1000/hour", strategy=strategy, deadline=5
    )
    try:
        codes = await _burst(mw)
    finally:
        await mw.aclose()
    assert codes.count(200) == 50 and codes.count(429) == 250
    assert not mw.backend.degraded


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import httpx
    from extapi_kit.middleware.rate_limit import RateLimitMiddleware
    from tests.ratelimit.helpers import ok_app

    url, start = sys.argv[1], float(sys.argv[2])

    async def main(start: float) -> None:
        out = {}
        for strategy in ("fixed-window", "sliding-window", "moving-window"):
            mw = RateLimitMiddleware(ok_app, storage=url, read="50/minute",
                                     strategy=strategy, deadline=5)
            transport = httpx.ASGITransport(mw, client=("203.0.113.7", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                while time.time() < start:
                    await asyncio.sleep(0.005)
                rs = await asyncio.gather(*(c.get("/") for _ in range(150)))
            out[strategy] = sum(r.status_code == 200 for r in rs)
            await mw.aclose()
            start += 0.3
        print(json.dumps(out))

    asyncio.run(main(start))
    """
)


@pytest.mark.redis
def clear_of_minute_boundary(start: float) -> float:
    """Move a burst's start so its ~1 s of traffic stays inside one epoch-aligned minute: the
    fixed and sliding windows are exact within a window and approximate across its boundary
    (documented), which is not what these tests measure."""
    offset = start % 60
    if offset > 50:
        return start + (60 - offset) + 2
    if offset < 2:
        return start + (2 - offset)
    return start


def test_two_processes_share_one_limit(redis_url: str) -> None:
    """Two OS processes, 150 concurrent requests each, one Redis: exactly 50 admitted in total."""
    start = clear_of_minute_boundary(time.time() + 2.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    for strategy in STRATEGIES:
        assert results[0][strategy] + results[1][strategy] == 50, (strategy, results)
