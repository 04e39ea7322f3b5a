"""Plan benchmarks (issue 20): what a plan adds to a request once the key is verified.

A plan is resolved when the key service builds a principal for its positive cache, never per
request, so a warm request pays only what the rate limiter does with the merged principal (a
dict lookup, and a policy named after the plan, compiled once). Measured in-process, ns per
request, same run, alternating rounds so both sides see the same machine state:

- ``verify``: ``KeyService.verify`` of a cached key, with and without a plan service;
- ``stack``: ApiKeyMiddleware + RateLimitMiddleware (memory storage) on a tiny ASGI app, a key
  on a plan (limits from the plan) against a key with the same limits set on the key itself.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from argon2 import profiles

from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.plans import PlanService

ROUNDS = 7
N = 20_000
LIMIT = "1000000000/minute"


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


async def _verify_ns(svc: KeyService, key: str, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        await svc.verify(key)
    return (time.perf_counter_ns() - start) / n


async def _stack_ns(app: Any, key: str, n: int) -> float:
    template = _scope(key)
    start = time.perf_counter_ns()
    for _ in range(n):
        await app(dict(template), _receive, _send)
    return (time.perf_counter_ns() - start) / n


async def _services(with_plan: bool) -> tuple[KeyService, str]:
    hasher = Argon2Hasher(profiles.CHEAPEST)
    if with_plan:
        plans = PlanService("memory://", cache_ttl=3600)
        await plans.create("pro", rate_limits={"read": LIMIT, "write": LIMIT})
        svc = KeyService("memory://", hasher=hasher, cache_ttl=3600, plans=plans)
        _, key = await svc.create("bench", plan="pro")
    else:
        svc = KeyService("memory://", hasher=hasher, cache_ttl=3600)
        _, key = await svc.create("bench", rate_limits={"read": LIMIT, "write": LIMIT})
    await svc.verify(key)
    return svc, key


async def _run() -> list[dict[str, Any]]:
    plain, plain_key = await _services(False)
    planned, planned_key = await _services(True)
    stacks = {}
    for name, svc, key in (("plain", plain, plain_key), ("plan", planned, planned_key)):
        limiter = RateLimitMiddleware(_ok, storage="memory://", strategy="fixed-window")
        stacks[name] = (ApiKeyMiddleware(limiter, store=svc), key)
    results: dict[str, list[float]] = {k: [] for k in ("vp", "vn", "sp", "sn")}
    await _verify_ns(plain, plain_key, 2000)  # warm-up
    await _verify_ns(planned, planned_key, 2000)
    for app, key in stacks.values():
        await _stack_ns(app, key, 2000)
    for _ in range(ROUNDS):
        results["vn"].append(await _verify_ns(plain, plain_key, N))
        results["vp"].append(await _verify_ns(planned, planned_key, N))
        results["sn"].append(await _stack_ns(*stacks["plain"], N // 4))
        results["sp"].append(await _stack_ns(*stacks["plan"], N // 4))
    med = {k: statistics.median(v) for k, v in results.items()}
    await plain.aclose()
    await planned.aclose()
    return [
        {
            "path": "KeyService.verify (cached key)",
            "without plan ns": round(med["vn"]),
            "with plan ns": round(med["vp"]),
            "added ns": round(med["vp"] - med["vn"]),
            "budget ns": 1000,
        },
        {
            "path": "ApiKey + RateLimit stack (memory)",
            "without plan ns": round(med["sn"]),
            "with plan ns": round(med["sp"]),
            "added ns": round(med["sp"] - med["sn"]),
            "budget ns": 1000,
        },
    ]


def run() -> list[dict[str, Any]]:
    """Run the suite and return its rows."""
    return asyncio.run(_run())


if __name__ == "__main__":
    for row in run():
        print(row)
