"""SQLite vs PostgreSQL, same run: audit writer, webhooks, key verify, idempotent POST.

Targets (issue 17): audit writer >= 20,000 records/s; webhook deliveries >= 1,500/s to a local
receiver; publish-to-delivery latency <= 5 ms median at 500 events/s. The PostgreSQL server is
the machine's (``EXTAPI_KIT_PG_SERVER``, default ``postgresql://postgres@127.0.0.1:5432``); the
suite creates a database of its own and drops it afterwards. Latency is measured from the moment
``publish()`` returns (the event is committed) to the receiver reading the request; the
``commit_ms`` column is what one durable commit (``fdatasync``) costs on this disk, which every
publish pays before that.

``python -m bench.postgres`` prints the rows; ``run()`` returns them for ``python -m bench``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import webhooks as wh
from bench.audit import _records
from bench.idempotency import _app as _idem_app
from bench.idempotency import _measure, _scope
from extapi_kit.audit import audit_store_from_url
from extapi_kit.keys.hashing import HmacHasher
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.idempotency import IdempotencyMiddleware

ROOT = Path(__file__).resolve().parents[1]
AUDIT_RECORDS = int(os.environ.get("BENCH_PG_AUDIT_RECORDS", "100000"))
BATCH = 500


def _kind(url: str) -> str:
    return url.split(":", 1)[0]


async def _audit(url: str) -> dict[str, Any]:
    sink = audit_store_from_url(url)
    records = _records(AUDIT_RECORDS)
    await sink.write_batch(records[:1])  # tables and connections outside the measurement
    t0 = time.perf_counter()
    for i in range(1, AUDIT_RECORDS, BATCH):
        await sink.write_batch(records[i : i + BATCH])
    elapsed = time.perf_counter() - t0
    await sink.aclose()
    return {"name": f"audit writer {_kind(url)}, batches of {BATCH}",
            "per_second": round((AUDIT_RECORDS - 1) / elapsed), "target": 20_000}  # fmt: skip


async def _keys(url: str) -> list[dict[str, Any]]:
    rows = []
    warm = KeyService(url, hasher=HmacHasher(b"p" * 32))
    _, key = await warm.create("bench")
    await warm.verify(key)
    samples = []
    for _ in range(20_000):
        t0 = time.perf_counter_ns()
        await warm.verify(key)
        samples.append(time.perf_counter_ns() - t0)
    rows.append({"name": f"key verify {_kind(url)}, warm cache",
                 "median_us": statistics.median(samples) / 1000})  # fmt: skip
    cold = KeyService(url, hasher=HmacHasher(b"p" * 32), cache_ttl=0)
    samples = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        await cold.verify(key)
        samples.append(time.perf_counter_ns() - t0)
    rows.append({"name": f"key verify {_kind(url)}, uncached (store lookup + HMAC)",
                 "median_us": statistics.median(samples) / 1000})  # fmt: skip
    await warm.aclose()
    await cold.aclose()
    return rows


async def _idempotency(url: str) -> list[dict[str, Any]]:
    first_mw = IdempotencyMiddleware(_idem_app, store=url)
    tag = os.urandom(3).hex()
    first = await _measure(first_mw, lambda i: f'"{tag}-{i}"'.encode())
    replay_mw = IdempotencyMiddleware(_idem_app, store=url)
    await replay_mw(_scope(f'"{tag}-same"'.encode()), wh_receive, wh_send)
    replay = await _measure(replay_mw, lambda i: f'"{tag}-same"'.encode())
    for mw in (first_mw, replay_mw):
        close = getattr(mw, "aclose", None)
        if close is not None:
            await close()
    return [
        {"name": f"idempotent POST {_kind(url)}, first", "median_us": statistics.median(first)},
        {"name": f"idempotent POST {_kind(url)}, replay", "median_us": statistics.median(replay)},
    ]


async def wh_receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def wh_send(message: Any) -> None:
    return None


async def _commit_ms(pg: str) -> float:
    import asyncpg

    conn = await asyncpg.connect(pg)
    try:
        # A logged table (a temporary one skips the WAL flush being measured).
        await conn.execute("CREATE TABLE bench_commit (x int)")
        samples = []
        for _ in range(200):
            t0 = time.perf_counter()
            await conn.execute("INSERT INTO bench_commit VALUES (1)")
            samples.append((time.perf_counter() - t0) * 1000)
        await conn.execute("DROP TABLE bench_commit")
        return statistics.median(samples)
    finally:
        await conn.close()


async def _main(base: str, pg: str, tmp: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"name": "one durable commit, postgresql",
                                   "median_ms": await _commit_ms(pg)}]  # fmt: skip
    # Short statement deadlines suit requests; the benchmark's bulk writes get more room.
    pg_url = f"{pg}?statement_timeout=10"
    sqlite = f"sqlite:///{tmp}/bench.db"
    for url in (sqlite, pg_url):
        rows.append(await _audit(url.replace("bench.db", "audit.db")))
    for url in (sqlite, pg_url):
        rows += await _keys(url.replace("bench.db", "keys.db"))
    for url in (sqlite, pg_url):
        rows += await _idempotency(url.replace("bench.db", "idem.db"))
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(100):
            try:
                await wh._stats(client, base)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        for i, url in enumerate((sqlite, pg_url)):
            url_i = url.replace("bench.db", f"wh{i}.db")
            null = url.replace("bench.db", f"null{i}.db").replace("?", f"?schema=null{i}&")
            rows.append(await wh._overhead(null))
            row = await wh._throughput(url_i, base, client)
            rows.append({**row, "target": 1500})
            lat_url = url.replace("bench.db", f"lat{i}.db").replace("?", f"?schema=lat{i}&")
            rows.append({**await wh._latency(lat_url, base, client), "target_ms": 5})
    return rows


def run() -> list[dict[str, Any]]:
    """Run the SQLite vs PostgreSQL benchmark (receiver process, private database)."""
    sys.path.insert(0, str(ROOT))
    from tests.support import postgres

    pg = postgres.create_database()
    port = wh._free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.webhooks:receiver", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
        cwd=str(ROOT),
    )  # fmt: skip
    try:
        tmp = tempfile.mkdtemp(prefix="bench-postgres-")
        return asyncio.run(_main(f"http://127.0.0.1:{port}", pg, tmp))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        postgres.drop_database(pg)


if __name__ == "__main__":
    for row in run():
        print(row)
