"""UsageMiddleware: µs added per request over a bare ASGI app (``python -m bench.usage``).

Rows: memory store for a key without quota (the counting path: one in-process dict update),
a request without principal (passthrough), a key with a monthly quota (one in-process charge),
SQLite without quota, and Redis on loopback (REDIS_URL, else a private redis-server): without
quota the hot path sends Redis nothing (``redis_round_trips_per_req`` counts the store's Redis
calls during the timed batches, before the background flush), with a quota it sends one Lua call.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.context import SCOPE_KEY, Principal, RequestContext
from extapi_kit.middleware.usage import UsageMiddleware

BATCHES = 40
PER_BATCH = 5000
PLAIN = Principal(key_id="bench1", owner="acme")
QUOTA = Principal(key_id="bench2", owner="acme", quota={"monthly": 10**12})


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope(principal: Principal | None) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/items",
        "headers": [(b"host", b"t")],
        "client": ("203.0.113.7", 1234),
        SCOPE_KEY: RequestContext(principal=principal),
    }


async def _batch_us(app: ASGIApp, principal: Principal | None, per_batch: int) -> float:
    scopes = [_scope(principal) for _ in range(per_batch)]
    start = time.perf_counter_ns()
    for scope in scopes:
        await app(scope, _receive, _send)
    return (time.perf_counter_ns() - start) / per_batch / 1000


async def _row(
    name: str,
    app: ASGIApp,
    principal: Principal | None,
    *,
    batches: int = BATCHES,
    per_batch: int = PER_BATCH,
) -> dict[str, Any]:
    """Alternate batches of the bare app and ``app``; added = median of paired differences."""
    wrapped: list[float] = []
    added: list[float] = []
    for _ in range(batches):
        base = await _batch_us(bare, principal, per_batch)
        t = await _batch_us(app, principal, per_batch)
        wrapped.append(t)
        added.append(t - base)
    return {
        "name": name,
        "median_us": round(statistics.median(wrapped), 2),
        "added_us": round(statistics.median(added), 2),
        "added_min_us": round(min(added), 2),
    }


async def _redis_rows(url: str) -> list[dict[str, Any]]:
    rows = []
    for name, principal, per_batch in (
        ("redis, key without quota", PLAIN, PER_BATCH),
        ("redis, key with monthly quota (1 Lua call)", QUOTA, 300),
    ):
        mw = UsageMiddleware(bare, store=url, flush_interval=3600)
        store: Any = mw.tracker.store
        await _batch_us(mw, QUOTA, 50)  # warm the pool and load the script
        await mw.flush()
        calls = 0
        inner = store._call

        async def counting(fn: Any, inner: Any = inner) -> Any:
            nonlocal calls
            calls += 1
            return await inner(fn)

        store._call = counting  # every Redis round trip of the store goes through _call
        row = await _row(name, mw, principal, batches=5, per_batch=per_batch)
        row["redis_round_trips_per_req"] = round(calls / (5 * per_batch), 3)
        await mw.aclose()
        rows.append(row)
    return rows


async def _run_async(redis_url: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    mw = UsageMiddleware(bare, flush_interval=3600)
    rows.append(await _row("memory, key without quota", mw, PLAIN))
    rows.append(await _row("memory, no principal (passthrough)", mw, None))
    rows.append(await _row("memory, key with monthly quota", mw, QUOTA))
    await mw.aclose()
    with tempfile.TemporaryDirectory() as tmp:
        mw = UsageMiddleware(bare, store=f"sqlite:///{tmp}/usage.db", flush_interval=3600)
        rows.append(await _row("sqlite, key without quota", mw, PLAIN))
        await mw.aclose()
    if redis_url:
        rows.extend(await _redis_rows(redis_url))
    return rows


def run() -> list[dict[str, Any]]:
    """Run the usage benchmark and return its rows (name, median_us, added_us, ...)."""
    redis_url = os.environ.get("REDIS_URL")
    server = None
    if not redis_url:
        try:
            from tests.support.redis_server import RedisServer

            if RedisServer.available():
                server = RedisServer()
                server.start()
                redis_url = server.url
        except Exception:  # no redis-server: report the in-process rows only
            server = None
    try:
        return asyncio.run(_run_async(redis_url))
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    """Print the rows as a small table."""
    for row in run():
        trips = row.get("redis_round_trips_per_req")
        extra = f"   redis round trips/req {trips}" if trips is not None else ""
        print(
            f"{row['name']:<46} {row['median_us']:>9.2f} µs/request"
            f"   +{row['added_us']:.2f} µs (min +{row['added_min_us']:.2f}){extra}"
        )


if __name__ == "__main__":
    main()
