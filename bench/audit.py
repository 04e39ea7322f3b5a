"""Audit benchmarks: request-path cost of AuditMiddleware, and SQLite writer throughput.

Targets (issue 5): <= 10 us added per request in-process (memory and SQLite sinks); >= 20,000
records/s written by the SQLite sink in batches. The request path is timed alone: the queue is
flushed between timed rounds, so the background writer's work is not counted here (it is what
the throughput row measures). ``median_us`` is the median of 30 rounds of 1,000 calls; ``min_us``
the fastest round, a steadier figure on a shared, loaded machine.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.audit.record import AuditRecord, new_record_id
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.middleware.audit import AuditMiddleware

ROUNDS = 30
PER_ROUND = 1000

_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_BODY = {"type": "http.response.body", "body": b"ok"}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send(_START)
    await send(_BODY)


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope() -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/projects/42",
        "query_string": b"page=2",
        "headers": [(b"host", b"t"), (b"user-agent", b"bench/1.0")],
        "client": ("203.0.113.7", 1234),
    }


async def _per_call_us(app: Any, flush: Any = None) -> tuple[float, float]:
    medians = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        for _ in range(PER_ROUND):
            await app(_scope(), _receive, _send)
        medians.append((time.perf_counter_ns() - t0) / PER_ROUND / 1000)
        if flush is not None:
            await flush()
    return statistics.median(medians), min(medians)


async def _request_path() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base, base_min = await _per_call_us(_app)
    rows.append({"name": "bare app", "median_us": round(base, 2), "min_us": round(base_min, 2)})
    with tempfile.TemporaryDirectory() as tmp:
        for label, sink in (
            ("audit memory sink", "memory://"),
            ("audit sqlite sink", f"sqlite:///{os.path.join(tmp, 'audit.db')}"),
        ):
            mw = AuditMiddleware(_app, sink=sink, queue_size=PER_ROUND * 2, spill_path=tmp)
            total, total_min = await _per_call_us(mw, mw.flush)
            await mw.aclose()
            rows.append(
                {
                    "name": label,
                    "median_us": round(total, 2),
                    "min_us": round(total_min, 2),
                    "added_us": round(total - base, 2),
                    "added_min_us": round(total_min - base_min, 2),
                    "target_us": 10,
                    "dropped": mw.dropped,
                }
            )
    return rows


def _records(n: int) -> list[AuditRecord]:
    now = int(time.time() * 1_000_000)
    return [
        AuditRecord(
            timestamp_us=now + i,
            request_id=f"r{i}",
            method="GET",
            path=f"/api/v1/projects/{i % 50}",
            route="/api/v1/projects/{id}",
            status=200,
            key_id=f"key-{i % 20}",
            key_prefix="xk_live_abc",
            client_ip="203.0.113.7",
            user_agent="bench/1.0",
            latency_ms=1.5,
            id=new_record_id(),
        )
        for i in range(n)
    ]


async def _sqlite_throughput(total: int = 100_000, batch: int = 500) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sink = SQLiteSink(os.path.join(tmp, "audit.db"))
        records = _records(total)
        await sink.write_batch(records[:1])
        t0 = time.perf_counter()
        for i in range(1, total, batch):
            await sink.write_batch(records[i : i + batch])
        elapsed = time.perf_counter() - t0
        await sink.aclose()
    return {
        "name": f"sqlite writer, batches of {batch}",
        "records_per_s": round((total - 1) / elapsed),
        "target_records_per_s": 20_000,
    }


def run() -> list[dict[str, Any]]:
    """Run the audit benchmarks and return one row per measurement."""

    async def _all() -> list[dict[str, Any]]:
        rows = await _request_path()
        rows.append(await _sqlite_throughput())
        return rows

    return asyncio.run(_all())


if __name__ == "__main__":
    for row in run():
        print(row)
