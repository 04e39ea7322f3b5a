"""API-key benchmarks: middleware overhead on a warm cache, cached/cold/HMAC verify costs.

Everything runs in-process: the ASGI app is called directly with a prepared scope, so the figures
are the cost of our code, not of a server or a network.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from extapi_kit.keys.hashing import Argon2Hasher, HmacHasher
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.middleware.api_key import ApiKeyMiddleware


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app() -> Starlette:
    return Starlette(routes=[Route("/hello", _hello)])


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.7", 1234),
        "server": ("t", 80),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _per_request_ns(app: Any, headers: list[tuple[bytes, bytes]], n: int) -> list[int]:
    template = _scope(headers)
    for _ in range(500):  # warm-up
        await app(dict(template), _receive, _send)
    out = []
    for _ in range(n):
        scope = dict(template)
        t0 = time.perf_counter_ns()
        await app(scope, _receive, _send)
        out.append(time.perf_counter_ns() - t0)
    return out


def _stats(name: str, samples_ns: list[int], **extra: Any) -> dict[str, Any]:
    ordered = sorted(samples_ns)
    return {
        "name": name,
        "median_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[int(len(ordered) * 0.99) - 1] / 1000,
        "n": len(ordered),
        **extra,
    }


async def _run() -> list[dict[str, Any]]:
    from argon2 import profiles

    rows: list[dict[str, Any]] = []
    n = 20_000
    service = KeyService(MemoryKeyStore(), hasher=Argon2Hasher(profiles.CHEAPEST))
    _, key = await service.create("bench", scopes=["read"])
    protected = ApiKeyMiddleware(_app(), store=service, required_scopes=["read"])
    header = [(b"x-api-key", key.encode())]
    bare = await _per_request_ns(_app(), header, n)
    guarded = await _per_request_ns(protected, header, n)
    added = statistics.median(guarded) - statistics.median(bare)
    rows.append(_stats("starlette bare", bare))
    rows.append(_stats("starlette + ApiKeyMiddleware (warm cache)", guarded))
    rows.append({"name": "added by ApiKeyMiddleware", "median_us": added / 1000, "target_us": 15})
    rejected = await _per_request_ns(protected, [(b"x-api-key", b"x" * 10_000)], n // 4)
    rows.append(_stats("401 for a 10 KB garbage key", rejected))

    cached = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await service.verify(key)
        cached.append(time.perf_counter_ns() - t0)
    rows.append(_stats("KeyService.verify, cached", cached))

    cold_svc = KeyService(MemoryKeyStore(), cache_ttl=0)  # default argon2id (m=19 MiB, t=2)
    _, cold_key = await cold_svc.create("cold")
    cold = []
    for _ in range(10):
        t0 = time.perf_counter_ns()
        await cold_svc.verify(cold_key)
        cold.append(time.perf_counter_ns() - t0)
    rows.append(_stats("KeyService.verify, cold argon2id (OWASP min)", cold))

    hmac_svc = KeyService(MemoryKeyStore(), hasher=HmacHasher(b"p" * 32), cache_ttl=0)
    _, hmac_key = await hmac_svc.create("hmac")
    uncached = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        await hmac_svc.verify(hmac_key)
        uncached.append(time.perf_counter_ns() - t0)
    rows.append(_stats("KeyService.verify, HMAC uncached (thread hop)", uncached))
    hasher = HmacHasher(b"p" * 32)
    stored = hasher.hash("x" * 80)
    raw = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        hasher.verify(stored, "x" * 80)
        raw.append(time.perf_counter_ns() - t0)
    rows.append(_stats("HmacHasher.verify (raw)", raw))
    for svc in (service, cold_svc, hmac_svc):
        await svc.aclose()
    return rows


def run() -> list[dict[str, Any]]:
    """Run the API-key benchmarks and return one row per measurement."""
    return asyncio.run(_run())


if __name__ == "__main__":
    for row in run():
        print(row)
