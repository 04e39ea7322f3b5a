"""Hand-written SQL on asyncpg vs SQLAlchemy Core (async, ``postgresql+asyncpg``), issue 17.

The two heavier PostgreSQL paths, each measured with the library's own store and then with the
*same statement* issued through a SQLAlchemy 2.x ``AsyncEngine`` (same pool size, same session
settings), interleaved round by round so both sides see the same table size and machine load:

- **audit batch**: :meth:`PostgresSink.write_batch` of 200 records (one ``unnest`` INSERT) vs
  SQLAlchemy ``text()`` of that statement, and vs the idiomatic Core construct
  ``insert(table).on_conflict_do_nothing()`` with a list of rows (``insertmanyvalues``).
- **outbox claim**: :meth:`PostgresWebhookStore.claim` of up to 32 due deliveries (``FOR UPDATE
  SKIP LOCKED``, leases written, events joined, rows turned into models) from ~20,000 pending
  deliveries, one claimer at a time and 8 concurrent claimers, vs SQLAlchemy ``text()``.

SQLAlchemy runs each statement in ``engine.begin()`` (BEGIN, statement, COMMIT: what a user's
engine or session does by default) and, as a second variant, on an ``AUTOCOMMIT`` engine (one
round trip, like the hand-written path). The server is ``EXTAPI_KIT_PG_SERVER`` (default
``postgresql://postgres@127.0.0.1:5432``); a private database is created and dropped.

``python -m bench.sql_paths [runs]`` prints one table per run and the medians over the runs;
``run()`` returns one run's rows for ``python -m bench sql_paths``.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.audit import _records
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_postgres import PostgresSink, _columns
from extapi_kit.webhooks._pg_sql import DCOLS, row_delivery, row_event
from extapi_kit.webhooks.models import Delivery, Endpoint
from extapi_kit.webhooks.store_postgres import PostgresWebhookStore

ROOT = Path(__file__).resolve().parents[1]
BATCH = 200
AUDIT_BATCHES = int(os.environ.get("BENCH_SQL_AUDIT_BATCHES", "25"))  # per variant and round
AUDIT_ROUNDS = 5
ENDPOINTS = 4
PENDING = 20_000
CLAIM_LIMIT = 32
CLAIMS = int(os.environ.get("BENCH_SQL_CLAIMS", "320"))  # per variant, mode and round
CLAIM_ROUNDS = 3
CONCURRENCY = 8
LEASE = 30.0

_CAST = re.compile(r"\$(\d+)::([a-z0-9_]+(?:\[\])?)")
_PARAM = re.compile(r"\$(\d+)")

Claim = Callable[[str], Awaitable[int]]


def to_text(sql: str) -> str:
    """Rewrite asyncpg SQL (``$1``, ``$2::int``) for SQLAlchemy ``text()`` (``:p1``, CAST).

    Args:
        sql: the library's statement.
    """
    named = _PARAM.sub(r":p\1", _CAST.sub(r"CAST(:p\1 AS \2)", sql))
    assert "::" not in named and "$" not in named, named
    return named


def _engine(db: Any, *, autocommit: bool) -> AsyncEngine:
    """An engine on the same database, pool size and session settings as ``db``'s pool."""
    cfg = db.config
    url = cfg.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    extra: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_async_engine(
        url,
        pool_size=cfg.pool_max,
        max_overflow=0,
        connect_args=db._connect_kwargs(),
        **extra,
    )


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# -- audit batch ---------------------------------------------------------------------------------


def _audit_table(name: str) -> Table:
    schema, table = name.split(".") if "." in name else (None, name)
    return Table(
        table.strip('"'),
        MetaData(),
        Column("seq", BigInteger, primary_key=True),
        Column("id", Text, nullable=False),
        Column("ts_us", BigInteger, nullable=False),
        Column("key_id", Text),
        Column("route", Text),
        Column("method", Text, nullable=False),
        Column("status", Integer, nullable=False),
        Column("data", Text, nullable=False),
        schema=schema.strip('"') if schema else None,
    )


def _row(rec: AuditRecord) -> dict[str, Any]:
    return {"id": rec.id, "ts_us": rec.timestamp_us, "key_id": rec.key_id, "route": rec.route,
            "method": rec.method, "status": rec.status, "data": rec.to_json()}  # fmt: skip


async def _audit(url: str) -> list[dict[str, Any]]:
    sink = PostgresSink.from_url(url)
    await sink.write_batch(_records(1))  # table, pool and prepared statement outside the timing
    db = sink._db
    sa_txn, sa_auto = _engine(db, autocommit=False), _engine(db, autocommit=True)
    insert_text = text(to_text(sink._insert))
    table = _audit_table(sink._table)
    insert_core = pg_insert(table).on_conflict_do_nothing(index_elements=["id"])

    async def hand(batch: list[AuditRecord]) -> None:
        await sink.write_batch(batch)

    async def sa_text_txn(batch: list[AuditRecord]) -> None:
        params = {f"p{i}": col for i, col in enumerate(_columns(batch), 1)}
        async with sa_txn.begin() as conn:
            await conn.execute(insert_text, params)

    async def sa_text_auto(batch: list[AuditRecord]) -> None:
        params = {f"p{i}": col for i, col in enumerate(_columns(batch), 1)}
        async with sa_auto.connect() as conn:
            await conn.execute(insert_text, params)

    async def sa_core_txn(batch: list[AuditRecord]) -> None:
        async with sa_txn.begin() as conn:
            await conn.execute(insert_core, [_row(r) for r in batch])

    variants: dict[str, Callable[[list[AuditRecord]], Awaitable[None]]] = {
        "asyncpg, hand-written (library)": hand,
        "SQLAlchemy text(), engine.begin()": sa_text_txn,
        "SQLAlchemy text(), AUTOCOMMIT": sa_text_auto,
        "SQLAlchemy insert().on_conflict_do_nothing(), begin()": sa_core_txn,
    }
    for fn in variants.values():  # connections and statement caches warm
        await fn(_records(BATCH))
    rates: dict[str, list[float]] = {name: [] for name in variants}
    loads: list[float] = []
    names = list(variants)
    for rnd in range(AUDIT_ROUNDS):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            records = _records(BATCH * AUDIT_BATCHES)
            batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
            fn = variants[name]
            t0 = time.perf_counter()
            for batch in batches:
                await fn(batch)
            rates[name].append(len(records) / (time.perf_counter() - t0))
        loads.append(_load())
    await sink.aclose()
    await sa_txn.dispose()
    await sa_auto.dispose()
    base = statistics.median(rates[names[0]])
    return [
        {
            "path": f"audit batch of {BATCH}",
            "variant": name,
            "records_per_s": round(statistics.median(r)),
            "vs_hand": statistics.median(r) / base,
            "load1": statistics.median(loads),
        }
        for name, r in rates.items()
    ]


# -- outbox claim --------------------------------------------------------------------------------


async def _fill(store: PostgresWebhookStore) -> None:
    """~20,000 pending deliveries over 4 endpoints, all due, with their events."""
    eps = [Endpoint(url=f"http://127.0.0.1:9/hook{i}") for i in range(ENDPOINTS)]
    for ep in eps:
        await store.add_endpoint(ep)
    n_events = PENDING // ENDPOINTS
    now = time.time()
    ids = [f"evt_bench{i:06d}" for i in range(n_events)]
    async with store._db.connection() as conn:
        await conn.execute(
            f"INSERT INTO {store.sql.t('events')} (id, type, ts, data, resources, version)"
            " SELECT i, 'job.completed', $2::float8, '{\"n\":1}', NULL, '1'"
            " FROM unnest($1::text[]) AS i",
            ids,
            now,
        )
    deliveries = [
        Delivery(
            event_id=eid,
            endpoint_id=ep.id,
            next_attempt_at=now - 3600 + k * 0.01,
            created_at=now - 3600,
        )
        for k, eid in enumerate(ids)
        for ep in eps
    ]
    for i in range(0, len(deliveries), 5000):
        await store.add_deliveries(deliveries[i : i + 5000])


async def _reset(store: PostgresWebhookStore) -> None:
    """Every claimed delivery pending again, dead rows vacuumed: each round starts the same."""
    d = store.sql.t("deliveries")
    async with store._db.connection() as conn:
        await conn.execute(
            f"UPDATE {d} SET status = 'pending', lease_owner = NULL, lease_until = NULL,"
            " due_at = next_attempt_at WHERE status = 'delivering'"
        )
        await conn.execute(f"VACUUM ANALYZE {d}")
        # Never-analyzed small tables make the planner guess ~800 endpoints, which prices the
        # claim above jit_above_cost: ~10 ms of JIT compilation per claim would swamp both sides.
        await conn.execute(f"ANALYZE {store.sql.t('endpoints')}, {store.sql.t('events')}")


async def _drive(claim: Claim, concurrency: int) -> tuple[float, list[float], float]:
    """Run ``CLAIMS`` claims over ``concurrency`` claimers: (claims/s, µs samples, rows/claim)."""
    samples: list[float] = []
    rows: list[int] = []
    per = CLAIMS // concurrency

    async def worker(k: int) -> None:
        for _ in range(per):
            t0 = time.perf_counter_ns()
            got = await claim(f"bench-{k}")
            samples.append((time.perf_counter_ns() - t0) / 1000)
            rows.append(got)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return len(samples) / elapsed, samples, statistics.mean(rows)


async def _claims(url: str) -> list[dict[str, Any]]:
    store = PostgresWebhookStore.from_url(url)
    await _fill(store)
    lease_db = store._lease_db  # claims run on the lease pool (synchronous_commit = off)
    sa_txn, sa_auto = _engine(lease_db, autocommit=False), _engine(lease_db, autocommit=True)
    claim_text = text(to_text(store._claim))
    width = len(DCOLS)

    async def hand(owner: str) -> int:
        now = time.time()
        got = await store.claim(owner=owner, now=now, lease_seconds=LEASE, limit=CLAIM_LIMIT)
        return len(got)

    def params(owner: str) -> dict[str, Any]:
        now = time.time()
        return {"p1": now, "p2": CLAIM_LIMIT, "p3": [], "p4": owner, "p5": now + LEASE}

    def models(rows: Any) -> int:  # the same work as the store: models, sorted by due time
        out = [(row_delivery(r), row_event(r, width)) for r in rows]
        out.sort(key=lambda c: c[0].next_attempt_at)
        return len(out)

    async def sa_text_txn(owner: str) -> int:
        async with sa_txn.begin() as conn:
            rows = (await conn.execute(claim_text, params(owner))).fetchall()
        return models(rows)

    async def sa_text_auto(owner: str) -> int:
        async with sa_auto.connect() as conn:
            rows = (await conn.execute(claim_text, params(owner))).fetchall()
        return models(rows)

    variants: dict[str, Claim] = {
        "asyncpg, hand-written (library)": hand,
        "SQLAlchemy text(), engine.begin()": sa_text_txn,
        "SQLAlchemy text(), AUTOCOMMIT": sa_text_auto,
    }
    for fn in variants.values():  # pools opened, statements prepared
        await asyncio.gather(*(fn(f"warm-{k}") for k in range(CONCURRENCY)))
    names = list(variants)
    out: list[dict[str, Any]] = []
    for conc in (1, CONCURRENCY):
        rates: dict[str, list[float]] = {name: [] for name in variants}
        lat: dict[str, list[float]] = {name: [] for name in variants}
        got: dict[str, list[float]] = {name: [] for name in variants}
        loads: list[float] = []
        for rnd in range(CLAIM_ROUNDS):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                await _reset(store)
                rate, samples, per_claim = await _drive(variants[name], conc)
                rates[name].append(rate)
                lat[name] += samples
                got[name].append(per_claim)
            loads.append(_load())
        base = statistics.median(rates[names[0]])
        for name in names:
            qs = statistics.quantiles(lat[name], n=20)
            out.append(
                {
                    "path": f"claim <= {CLAIM_LIMIT} of {PENDING:,} pending, {conc} claimer(s)",
                    "variant": name,
                    "claims_per_s": round(statistics.median(rates[name])),
                    "median_us": round(statistics.median(lat[name])),
                    "p95_us": round(qs[18]),
                    "rows_per_claim": statistics.mean(got[name]),
                    "vs_hand": statistics.median(rates[name]) / base,
                    "load1": statistics.median(loads),
                }
            )
    await store.aclose()
    await sa_txn.dispose()
    await sa_auto.dispose()
    return out


async def _main(pg: str) -> list[dict[str, Any]]:
    # The same generous statement deadline as bench/postgres.py (bulk writes on a loaded box).
    rows = await _audit(f"{pg}?statement_timeout=10&schema=audit")
    rows += await _claims(f"{pg}?statement_timeout=10&schema=outbox")
    return rows


def run() -> list[dict[str, Any]]:
    """Run once against a private database (created here, dropped afterwards); return the rows."""
    sys.path.insert(0, str(ROOT))
    from tests.support import postgres

    pg = postgres.create_database()
    try:
        return asyncio.run(_main(pg))
    finally:
        postgres.drop_database(pg)


def main(argv: list[str]) -> None:
    """Run ``argv[0]`` times (default 3); print each run's table and the medians over runs."""
    from bench.__main__ import _table

    runs = int(argv[0]) if argv else 3
    results = []
    for i in range(runs):
        rows = run()
        print(f"## run {i + 1} (load average at end: {os.getloadavg()})\n{_table(rows)}")
        results.append(rows)
    merged = []
    for j, row in enumerate(results[0]):
        med = dict(row)
        for key, value in row.items():
            if isinstance(value, int | float):
                values = [r[j][key] for r in results]
                med[key] = statistics.median(values)
                if isinstance(value, int):
                    med[key] = round(med[key])
        merged.append(med)
    print(f"## median of {runs} runs\n{_table(merged)}")


if __name__ == "__main__":
    main(sys.argv[1:])
