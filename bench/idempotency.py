"""Cost of IdempotencyMiddleware per keyed POST, memory store, called as a plain ASGI app.

Rows: the bare app (baseline), a first request (fingerprint + lock + capture + store), a replay
(fingerprint + lookup + stored answer) and an unkeyed POST (header check only). ``added_us`` is
the median minus the baseline median. Run with ``python -m bench idempotency``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from extapi_kit._types import ASGIApp, Message, Scope
from extapi_kit.middleware.idempotency import IdempotencyMiddleware

ITERATIONS = 20_000
WARMUP = 1_000
BODY = b'{"sku":"abc-123","quantity":2,"note":"benchmark order"}'
RESPONSE = b'{"id":"ord_1","status":"created"}'


async def _app(scope: Scope, receive: Any, send: Any) -> None:
    message = await receive()
    while message.get("more_body", False):  # pragma: no cover - single-chunk bodies here
        message = await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(RESPONSE)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": RESPONSE, "more_body": False})


def _scope(key: bytes | None) -> Scope:
    headers = [
        (b"host", b"api.example.com"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    if key is not None:
        headers.append((b"idempotency-key", key))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/orders",
        "raw_path": b"/api/v1/orders",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.7", 1234),
        "server": ("api.example.com", 80),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def _send(message: Message) -> None:
    return None


async def _measure(app: ASGIApp, key_for: Callable[[int], bytes | None]) -> list[float]:
    samples: list[float] = []
    for i in range(WARMUP + ITERATIONS):
        scope = _scope(key_for(i))
        start = time.perf_counter_ns()
        await app(scope, _receive, _send)
        elapsed = time.perf_counter_ns() - start
        if i >= WARMUP:
            samples.append(elapsed / 1000)
    return samples


def _row(name: str, samples: list[float], baseline: float | None) -> dict[str, Any]:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    return {
        "name": name,
        "median_us": round(median, 2),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1], 2),
        "added_us": round(median - baseline, 2) if baseline is not None else 0.0,
        "iterations": len(samples),
    }


async def _run() -> list[dict[str, Any]]:
    base = await _measure(_app, lambda i: b'"fixed"')
    base_median = statistics.median(base)
    first_mw = IdempotencyMiddleware(_app, store="memory://")
    first = await _measure(first_mw, lambda i: f'"key-{i}"'.encode())
    replay_mw = IdempotencyMiddleware(_app, store="memory://")
    await replay_mw(_scope(b'"same"'), _receive, _send)
    replay = await _measure(replay_mw, lambda i: b'"same"')
    plain = await _measure(IdempotencyMiddleware(_app), lambda i: None)
    return [
        _row("bare app (baseline)", base, None),
        _row("idempotent POST, first (memory)", first, base_median),
        _row("idempotent POST, replay (memory)", replay, base_median),
        _row("POST without key (pass-through)", plain, base_median),
    ]


def run() -> list[dict[str, Any]]:
    """Run the benchmark and return one row per case."""
    return asyncio.run(_run())


if __name__ == "__main__":
    for row in run():
        print(row)
