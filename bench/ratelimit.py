"""RateLimitMiddleware: µs added per request over a bare ASGI app (``python -m bench.ratelimit``).

Rows: memory storage with 1 live key and with 100,000 live keys (every request on a different
key), and Redis on loopback (REDIS_URL, else a private redis-server on a free port).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.middleware.rate_limit import RateLimitMiddleware

BATCHES = 15
PER_BATCH = 2000
LIVE_KEYS = 100_000


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope(ip: str) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/items",
        "headers": [(b"host", b"t")],
        "client": (ip, 1234),
    }


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


async def _batch_us(
    app: ASGIApp, ips: Callable[[int], str], first: int, per_batch: int, yield_each: bool
) -> float:
    scopes = [_scope(ips(first + i)) for i in range(per_batch)]
    start = time.perf_counter_ns()
    for scope in scopes:
        await app(scope, _receive, _send)
        if yield_each:  # let background tasks run, as a server's loop would between requests
            await asyncio.sleep(0)
    return (time.perf_counter_ns() - start) / per_batch / 1000


async def _row(
    name: str,
    app: ASGIApp,
    ips: Callable[[int], str],
    *,
    batches: int = BATCHES,
    per_batch: int = PER_BATCH,
    yield_each: bool = False,
) -> dict[str, Any]:
    """Alternate batches of the bare app and ``app``; added = median of the paired differences
    (the box is shared, so pairing cancels most of the background noise)."""
    wrapped: list[float] = []
    added: list[float] = []
    n = 0
    for _ in range(batches):
        base = await _batch_us(bare, ips, n, per_batch, yield_each)
        t = await _batch_us(app, ips, n, per_batch, yield_each)
        n += per_batch
        wrapped.append(t)
        added.append(t - base)
    return {
        "name": name,
        "median_us": round(statistics.median(wrapped), 2),
        "added_us": round(statistics.median(added), 2),
        "added_min_us": round(min(added), 2),
    }


def _one(_: int) -> str:
    return "203.0.113.7"


def _many(i: int) -> str:
    return _ip(i % LIVE_KEYS)


async def _run_async(redis_url: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    mw = RateLimitMiddleware(bare, read="1000000000/minute")
    rows.append(await _row("memory, 1 live key", mw, _one))
    mw = RateLimitMiddleware(bare, read="1000000000/minute")
    for i in range(LIVE_KEYS):
        await mw(_scope(_ip(i)), _receive, _send)
    live = len(mw.backend.storage)
    rows.append(await _row(f"memory, {live:,} live keys (each request another key)", mw, _many))
    rows.append(await _row(f"memory, {live:,} live keys, same key", mw, _one))
    rows.extend(_storage_rows())
    for live in (1, 10_000):
        rows.append(await _limits_memory_reference(live))
    if redis_url:
        mw = RateLimitMiddleware(bare, storage=redis_url, read="1000000000/minute", deadline=1)
        await _batch_us(mw, _one, 0, 200, False)  # warm the pool and load the script
        rows.append(await _row("redis loopback (1 Lua call)", mw, _one, batches=10, per_batch=500))
        await mw.aclose()
    return rows


def _storage_rows() -> list[dict[str, Any]]:
    """The decision alone (FlatMemoryStorage.decide), 1 key vs 100,000 keys in rotation."""
    from extapi_kit.ratelimit import FlatMemoryStorage
    from extapi_kit.ratelimit._result import SLIDING

    storage = FlatMemoryStorage()
    keys = [f"extapi:s:read:60:ip:{_ip(i)}" for i in range(LIVE_KEYS)]
    window = [(10**9, 60)]
    for key in keys:
        storage.decide(SLIDING, [key], window, 1)
    rows = []
    picks: list[tuple[str, Callable[[int], str]]] = [
        ("1 key", lambda i: keys[0]),
        ("100,000 keys", lambda i: keys[i]),
    ]
    for name, pick in picks:
        samples = []
        for b in range(BATCHES):
            batch = [[pick((b * PER_BATCH + i) % LIVE_KEYS)] for i in range(PER_BATCH)]
            start = time.perf_counter_ns()
            for ks in batch:
                storage.decide(SLIDING, ks, window, 1)
            samples.append((time.perf_counter_ns() - start) / PER_BATCH / 1000)
        rows.append(
            {
                "name": f"FlatMemoryStorage.decide alone, {name}",
                "median_us": round(statistics.median(samples), 2),
                "added_us": round(statistics.median(samples), 2),
                "added_min_us": round(min(samples), 2),
            }
        )
    return rows


async def _limits_memory_reference(live: int) -> dict[str, Any]:
    """limits' own async+memory:// behind the same middleware, loop yielding between requests."""
    from limits.aio.storage import MemoryStorage

    storage = MemoryStorage()
    mw = RateLimitMiddleware(bare, storage=storage, read="1000000000/minute", deadline=5)
    for i in range(live - 1):
        await storage.incr(f"filler/{i}", 60)
    return await _row(
        f"reference: limits async+memory, {live:,} key(s)",
        mw,
        _one,
        batches=3,
        per_batch=200,
        yield_each=True,
    )


def run() -> list[dict[str, Any]]:
    """Run the rate-limit benchmark and return its rows (name, median_us, added_us)."""
    redis_url = os.environ.get("REDIS_URL")
    server = None
    if not redis_url:
        try:
            from tests.support.redis_server import RedisServer

            if RedisServer.available():
                server = RedisServer()
                server.start()
                redis_url = server.url
        except Exception:  # no redis-server: report memory rows only
            server = None
    try:
        return asyncio.run(_run_async(redis_url))
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    """Print the rows as a small table."""
    for row in run():
        print(
            f"{row['name']:<52} {row['median_us']:>9.2f} µs/request"
            f"   +{row['added_us']:.2f} µs (min +{row['added_min_us']:.2f})"
        )


if __name__ == "__main__":
    main()
