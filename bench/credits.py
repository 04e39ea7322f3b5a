"""Credit benchmarks (issue 20 §2): what spending credits adds to a request.

In-process, ns per request, same run, alternating rounds so both sides see the same machine state:

- ``memory``: ApiKey + RateLimit (memory storage) + CreditsMiddleware on a tiny ASGI app, a key
  with a balance (each request spends 1 and gets ``Credits-Remaining``) against the same stack
  without the credits layer; budget 5 µs added. A key without a balance is measured too.
- ``redis`` (REDIS_URL, else a private redis-server): the rate limiter on Redis spending the
  credits in its own script, against the same stack without credits; the Redis commands per
  request are counted on the rate limiter's connection (1.0: one round trip for windows and
  credits together) and on the credit store (0: the credits layer never calls it).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from argon2 import profiles

from extapi_kit.credits import CreditLedger, CreditsMiddleware
from extapi_kit.credits.store_redis import RedisCreditStore
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.rate_limit import RateLimitMiddleware

ROUNDS = 7
N = 5_000
LIMIT = "1000000000/minute"
BALANCE = 10**12


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


def _scope(key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-api-key", key.encode())],
        "client": ("203.0.113.7", 1234),
        "server": ("t", 80),
    }


async def _ns(app: Any, key: str, n: int) -> float:
    template = _scope(key)
    start = time.perf_counter_ns()
    for _ in range(n):
        await app(dict(template), _receive, _send)
    return (time.perf_counter_ns() - start) / n


async def _keys() -> tuple[KeyService, str, str]:
    svc = KeyService("memory://", hasher=Argon2Hasher(profiles.CHEAPEST), cache_ttl=3600)
    metered, key = await svc.create("metered", rate_limits={"read": LIMIT})
    _, free_key = await svc.create("free", rate_limits={"read": LIMIT})
    await svc.verify(key)
    await svc.verify(free_key)
    return svc, metered.id, key + " " + free_key


def _stack(svc: KeyService, storage: str, ledger: CreditLedger | None) -> Any:
    inner: Any = _ok if ledger is None else CreditsMiddleware(_ok, ledger=ledger)
    limiter = RateLimitMiddleware(
        inner, storage=storage, strategy="fixed-window", credits=ledger, deadline=1.0
    )
    return ApiKeyMiddleware(limiter, store=svc), limiter


async def _memory_rows() -> list[dict[str, Any]]:
    svc, key_id, both = await _keys()
    key, free_key = both.split(" ")
    ledger = CreditLedger()
    await ledger.set(BALANCE, key_id=key_id)
    plain, _ = _stack(svc, "memory://", None)
    credited, _ = _stack(svc, "memory://", ledger)
    runs: dict[str, list[float]] = {"plain": [], "metered": [], "unmetered": []}
    for app, k in ((plain, key), (credited, key), (credited, free_key)):
        await _ns(app, k, 1000)  # warm-up
    for _ in range(ROUNDS):
        runs["plain"].append(await _ns(plain, key, N))
        runs["metered"].append(await _ns(credited, key, N))
        runs["unmetered"].append(await _ns(credited, free_key, N))
    med = {k: statistics.median(v) for k, v in runs.items()}
    await svc.aclose()
    return [
        {
            "path": "ApiKey + RateLimit + Credits (memory), key with a balance",
            "without credits ns": round(med["plain"]),
            "with credits ns": round(med["metered"]),
            "added ns": round(med["metered"] - med["plain"]),
            "budget ns": 5000,
        },
        {
            "path": "same stack, key without a balance",
            "without credits ns": round(med["plain"]),
            "with credits ns": round(med["unmetered"]),
            "added ns": round(med["unmetered"] - med["plain"]),
            "budget ns": 5000,
        },
    ]


async def _redis_rows(url: str) -> list[dict[str, Any]]:
    svc, key_id, both = await _keys()
    key = both.split(" ")[0]
    store = RedisCreditStore.from_url(url)
    ledger = CreditLedger(store)
    await ledger.set(BALANCE, key_id=key_id)
    plain, plain_rl = _stack(svc, url, None)
    fused, fused_rl = _stack(svc, url, ledger)
    n = N // 5
    for app in (plain, fused):
        await _ns(app, key, 200)
    pipe = fused_rl.backend.primary.pipe
    commands, calls = pipe.commands, store.calls
    runs: dict[str, list[float]] = {"plain": [], "fused": []}
    for _ in range(ROUNDS):
        runs["plain"].append(await _ns(plain, key, n))
        runs["fused"].append(await _ns(fused, key, n))
    per_request = (pipe.commands - commands) / (ROUNDS * n)
    store_calls = (store.calls - calls) / (ROUNDS * n)
    med = {k: statistics.median(v) for k, v in runs.items()}
    await ledger.clear(key_id=key_id)
    await plain_rl.aclose()
    await fused_rl.aclose()
    await store.aclose()
    await svc.aclose()
    return [
        {
            "path": "ApiKey + RateLimit + Credits (Redis, spent in the rate-limit script)",
            "without credits ns": round(med["plain"]),
            "with credits ns": round(med["fused"]),
            "added ns": round(med["fused"] - med["plain"]),
            "redis commands/req": round(per_request, 3),
            "credit store calls/req": round(store_calls, 3),
        }
    ]


async def _run(redis_url: str | None) -> list[dict[str, Any]]:
    rows = await _memory_rows()
    if redis_url:
        rows.extend(await _redis_rows(redis_url))
    return rows


def run() -> list[dict[str, Any]]:
    """Run the suite and return its rows."""
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
        return asyncio.run(_run(redis_url))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    for row in run():
        print(row)
