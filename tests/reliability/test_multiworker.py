"""Multi-worker correctness on Redis: ``uvicorn --workers 2`` gives the answers of one process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability._server import ServerProc, serve
from tests.reliability.stack import READ_SCOPE, WRITE_SCOPE, cheap_service, count_effects

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def two_workers(tmp_path: Path, redis_url: str) -> Iterator[ServerProc]:
    env = {
        "EXTAPI_REL_KEYS": redis_url,
        "EXTAPI_REL_REDIS": redis_url,
        "EXTAPI_REL_READ": "50/minute",
        "EXTAPI_REL_DEADLINE": "5",
        # Exact in every window; the sliding counter may admit a few more when the burst
        # straddles a window boundary (documented approximation, case L5).
        "EXTAPI_REL_STRATEGY": "moving-window",
    }
    with serve(tmp_path, env, workers=2) as server:
        yield server


async def _fresh(server: ServerProc, key: str, path: str, **kw: str) -> httpx.Response:
    """One request on a new connection (so the kernel may hand it to either worker)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        headers = {"X-API-Key": key, **kw}
        if path.endswith("orders"):
            return await c.post(path, headers=headers, json={})
        return await c.get(path, headers=headers)


async def _both_workers_answer(server: ServerProc, key: str) -> set[str]:
    pids: set[str] = set()
    async with asyncio.timeout(20):
        while len(pids) < 2:
            batch = await asyncio.gather(
                *(
                    _fresh(server, key, "/api/v1/orders", **{"Idempotency-Key": "warm"})
                    for _ in range(8)
                )
            )
            pids |= {r.headers["x-worker-pid"] for r in batch}
    return pids


async def test_one_limit_enforced_once_across_workers(
    two_workers: ServerProc, redis_url: str
) -> None:
    """L1, L3: 300 concurrent requests at L=50 across 2 workers on Redis → exactly 50 admitted."""
    service = cheap_service(redis_url)
    _, key = await service.create("rl", scopes=[READ_SCOPE, WRITE_SCOPE])
    await service.aclose()
    assert len(await _both_workers_answer(two_workers, key)) == 2
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=two_workers.url, timeout=30, limits=limits) as c:
        async with asyncio.timeout(60):
            rs = await asyncio.gather(
                *(c.get(f"/api/v1/items/{i}", headers={"X-API-Key": key}) for i in range(300))
            )
    statuses = Counter(r.status_code for r in rs)
    assert statuses == {200: 50, 429: 250}, (statuses, two_workers.log.read_text()[-1500:])
    assert len({r.headers["x-worker-pid"] for r in rs}) == 2


async def test_revoked_key_refused_by_both_workers_within_a_second(
    two_workers: ServerProc, redis_url: str
) -> None:
    """A6: a key cached by both workers (cache TTL 30 s) is refused by both within 1 s of revoke."""
    service = cheap_service(redis_url)
    try:
        record, key = await service.create("rev", scopes=[READ_SCOPE, WRITE_SCOPE])
        assert len(await _both_workers_answer(two_workers, key)) == 2
        await service.revoke(record.id)
        revoked_at = time.monotonic()
        refused: set[str] = set()
        async with asyncio.timeout(10):
            while len(refused) < 2:
                r = await _fresh(two_workers, key, "/api/v1/items/1")
                if r.status_code == 401:
                    refused.add(r.headers["x-worker-pid"])
                else:
                    assert time.monotonic() - revoked_at < 1.0, "a worker still serves it after 1 s"
    finally:
        await service.aclose()


async def test_idempotency_holds_across_workers(two_workers: ServerProc, redis_url: str) -> None:
    """I2, Z3: concurrent writes with one Idempotency-Key, batched until both workers have
    answered → one side effect; the others get 409 (in flight) or the replay."""
    service = cheap_service(redis_url)
    _, key = await service.create("idem", scopes=[READ_SCOPE, WRITE_SCOPE])
    await service.aclose()
    pids: set[str] = set()
    statuses: set[int] = set()
    async with asyncio.timeout(30):
        while len(pids) < 2:
            rs = await asyncio.gather(
                *(
                    _fresh(two_workers, key, "/api/v1/orders", **{"Idempotency-Key": "once"})
                    for _ in range(10)
                )
            )
            pids |= {r.headers["x-worker-pid"] for r in rs}
            statuses |= {r.status_code for r in rs}
    assert statuses <= {201, 409}, statuses
    assert count_effects(two_workers.effects)["once"] == 1
