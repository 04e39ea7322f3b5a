"""The PostgreSQL audit sink at 10 million rows: admin query times, writes and pruning at that size.

Run once, by hand (not part of ``nox -s bench`` or the test suite; it takes several minutes and
~7 GB of disk)::

    python -m bench.audit_10m            # ROWS=10000000 by default
    BENCH_AUDIT_ROWS=1000000 python -m bench.audit_10m

The rows are generated in Python and loaded with ``COPY`` (asyncpg's binary
``copy_records_to_table``) into the sink's own table, indexes in place: 30 days of traffic from
1,000 keys over 50 routes, statuses 200 (90 %), 401, 404, 429 (1 %) and 500. Each query is what
the admin API runs (``PostgresSink.query``), timed 20 times; the table shows the median and p95.
The database is created on ``EXTAPI_KIT_PG_SERVER`` and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from extapi_kit.audit.sink_postgres import PostgresSink

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("BENCH_AUDIT_ROWS", "10000000"))
CHUNK = 200_000
DAYS = 30
T_END = 1_800_000_000_000_000  # epoch microseconds
SPAN = DAYS * 86_400 * 1_000_000
STATUSES = [200] * 90 + [401] * 4 + [404] * 4 + [429] + [500]


def _rows(start: int, n: int) -> Iterator[tuple[Any, ...]]:
    step = SPAN // ROWS
    for i in range(start, start + n):
        ts = T_END - SPAN + i * step
        key = f"key-{(i * 7919) % 1000}"
        route = f"/api/v1/r{i % 50}/{{id}}"
        status = STATUSES[(i * 31) % 100]
        method = "GET" if i % 3 else "POST"
        rid = f"{ts * 1000:016x}{i:012x}"
        data = (
            f'{{"timestamp_us":{ts},"request_id":"r{i}","method":"{method}",'
            f'"path":"/api/v1/r{i % 50}/{i}","route":"{route}","query":"","status":{status},'
            f'"latency_ms":1.5,"key_id":"{key}","key_prefix":"xk_live_abc","owner":null,'
            '"scopes":[],"client_ip":"203.0.113.7","user_agent":"bench/1.0","bytes_in":0,'
            '"bytes_out":0,"rate_limit":null,"idempotency":null,"rejection":null,"error":false,'
            '"client_disconnected":false,"resource_ids":{},"protocol":"http","extra":{},'
            f'"id":"{rid}"}}'
        )
        yield (rid, ts, key, route, method, status, data)


async def _load(sink: PostgresSink) -> float:
    table = sink._table
    schema, name = table.split(".", 1)
    t0 = time.perf_counter()
    async with sink._db.connection() as conn:
        for start in range(0, ROWS, CHUNK):
            await conn.copy_records_to_table(
                name,
                schema_name=schema,
                columns=["id", "ts_us", "key_id", "route", "method", "status", "data"],
                records=_rows(start, min(CHUNK, ROWS - start)),
                timeout=600,
            )
            print(f"  loaded {start + CHUNK:,} rows", file=sys.stderr, flush=True)
        loaded = time.perf_counter() - t0
        await conn.execute(f"VACUUM ANALYZE {table}", timeout=1800)
    return loaded


async def _timed(fn: Callable[[], Awaitable[Any]], n: int = 20) -> tuple[float, float]:
    await fn()  # warm the cache once, as a live admin console would have it
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


async def _main(url: str) -> list[dict[str, Any]]:
    sink = PostgresSink.from_url(f"{url}?statement_timeout=600")
    await sink.count()  # create the table and its indexes
    loaded = await _load(sink)
    rows: list[dict[str, Any]] = [
        {"name": f"COPY {ROWS:,} rows (indexes in place)", "seconds": round(loaded, 1),
         "rows_per_s": round(ROWS / loaded)},
    ]  # fmt: skip
    async with sink._db.connection() as conn:
        size = await conn.fetchval(f"SELECT pg_total_relation_size('{sink._table}')")
    rows.append({"name": "table + indexes size", "gib": round(size / 2**30, 2)})
    day = 86_400 * 1e6
    mid = (T_END - SPAN / 2) / 1e6
    _, deep = await sink.query(key_id="key-7", limit=100)
    for _ in range(9):
        _, deep = await sink.query(key_id="key-7", limit=100, cursor=deep)
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("newest page (100), no filter", lambda: sink.query(limit=100)),
        ("by key, first page", lambda: sink.query(key_id="key-7", limit=100)),
        ("by key, 11th page (cursor)", lambda: sink.query(key_id="key-7", limit=100, cursor=deep)),
        ("by route, first page", lambda: sink.query(route="/api/v1/r3/{id}", limit=100)),
        ("by key + one day, mid-range",
         lambda: sink.query(key_id="key-7", since=mid, until=mid + day / 1e6, limit=100)),
        ("one hour, mid-range", lambda: sink.query(since=mid, until=mid + 3600, limit=100)),
        ("by key + status 429", lambda: sink.query(key_id="key-7", status=429, limit=100)),
        ("status 429 only (1 %)", lambda: sink.query(status=429, limit=100)),
        ("by route + method POST, one day",
         lambda: sink.query(route="/api/v1/r3/{id}", method="POST", since=mid,
                            until=mid + day / 1e6, limit=100)),
    ]  # fmt: skip
    for name, fn in cases:
        median, p95 = await _timed(fn)
        rows.append({"name": name, "median_ms": round(median, 2), "p95_ms": round(p95, 2)})
    # Writes at this size: the benchmark's batches of 500.
    from bench.audit import _records

    records = _records(50_000)
    t0 = time.perf_counter()
    for i in range(0, len(records), 500):
        await sink.write_batch(records[i : i + 500])
    rows.append({"name": "write_batch at 10M rows (500/batch)",
                 "rows_per_s": round(len(records) / (time.perf_counter() - t0))})  # fmt: skip
    t0 = time.perf_counter()
    pruned = await sink.prune(_dt(T_END - SPAN + day))
    rows.append({"name": f"prune the oldest day ({pruned:,} rows)",
                 "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    await sink.aclose()
    return rows


def _dt(us: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1e6, tz=UTC)


def main() -> None:
    """Create a database, load it, time the queries, print the rows, drop the database."""
    sys.path.insert(0, str(ROOT))
    from tests.support import postgres

    url = postgres.create_database()
    try:
        for row in asyncio.run(_main(url)):
            print(row, flush=True)
    finally:
        postgres.drop_database(url)


if __name__ == "__main__":
    main()
