"""Key analytics: µs added per request, and their off-path cost (``python -m bench.activity``).

Key analytics ride on the audit records (issue 20 §4), so the request path should pay nothing:
``request path`` rows time an :class:`AuditMiddleware` over a bare app with and without a
:class:`KeyActivity` among its sinks, in alternating batches (the writer delivers between
batches, off the clock); ``added_us`` is the median paired difference (budget: <= 2 µs). The
``off path`` rows time what the audit writer's task then does per record (fold into the
pending dict) and per key write (load, merge, compare-and-set) on memory and SQLite.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from typing import Any

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.analytics import KeyActivity
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_memory import MemorySink
from extapi_kit.context import SCOPE_KEY, Principal, RequestContext
from extapi_kit.middleware.audit import AuditMiddleware

BATCHES = 30
PER_BATCH = 2000
KEYS = [Principal(key_id=f"bench{i}", owner="acme") for i in range(50)]


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope(i: int) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/items",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"user-agent", f"sdk/{i % 7}".encode())],
        "client": (f"198.51.100.{i % 200}", 1234),
        SCOPE_KEY: RequestContext(principal=KEYS[i % len(KEYS)]),
    }


async def _batch_us(app: AuditMiddleware, per_batch: int) -> float:
    scopes = [_scope(i) for i in range(per_batch)]
    start = time.perf_counter_ns()
    for scope in scopes:
        await app(scope, _receive, _send)
    elapsed = (time.perf_counter_ns() - start) / per_batch / 1000
    await app.flush()  # the writer's delivery (and the analytics fold) happen off the clock
    return elapsed


async def _request_path() -> dict[str, Any]:
    plain = AuditMiddleware(bare, sink=MemorySink(), queue_size=PER_BATCH * 2)
    activity = KeyActivity("memory://", flush_interval=3600)
    with_activity = AuditMiddleware(bare, sink=[MemorySink(), activity], queue_size=PER_BATCH * 2)
    plain_us: list[float] = []
    added: list[float] = []
    for _ in range(BATCHES):
        base = await _batch_us(plain, PER_BATCH)
        t = await _batch_us(with_activity, PER_BATCH)
        plain_us.append(base)
        added.append(t - base)
    await activity.aclose()
    await plain.aclose()
    await with_activity.aclose()
    return {
        "name": "request path: audit + key analytics vs audit alone",
        "peer_us": round(statistics.median(plain_us), 2),
        "added_us": round(statistics.median(added), 2),
        "added_min_us": round(min(added), 2),
    }


def _records(n: int) -> list[AuditRecord]:
    now = time.time()
    return [
        AuditRecord(
            timestamp_us=int(now * 1e6),
            request_id="r",
            method="GET",
            path="/items",
            status=200 if i % 10 else 404,
            key_id=KEYS[i % len(KEYS)].key_id,
            client_ip=f"198.51.100.{i % 200}",
            user_agent=f"sdk/{i % 7}",
        )
        for i in range(n)
    ]


async def _off_path(url: str, label: str) -> list[dict[str, Any]]:
    activity = KeyActivity(url, flush_interval=3600)
    records = _records(20_000)
    start = time.perf_counter_ns()
    await activity.write_batch(records)
    fold = (time.perf_counter_ns() - start) / len(records) / 1000
    writes: list[float] = []
    for _ in range(5):
        start = time.perf_counter_ns()
        await activity.flush()
        writes.append((time.perf_counter_ns() - start) / len(KEYS) / 1000)
        await activity.write_batch(records[:2000])
    await activity.aclose()
    return [
        {"name": f"off path, {label}: fold one audit record", "us": round(fold, 2)},
        {
            "name": f"off path, {label}: write one key (load, merge, CAS)",
            "us": round(statistics.median(writes), 1),
        },
    ]


async def _run_async() -> list[dict[str, Any]]:
    rows = [await _request_path()]
    rows.extend(await _off_path("memory://", "memory"))
    with tempfile.TemporaryDirectory() as tmp:
        rows.extend(await _off_path(f"sqlite:///{tmp}/activity.db", "sqlite"))
    return rows


def run() -> list[dict[str, Any]]:
    """Run the key-analytics benchmark and return its rows."""
    return asyncio.run(_run_async())


def main() -> None:
    """Print the rows."""
    for row in run():
        print(row)


if __name__ == "__main__":
    main()
