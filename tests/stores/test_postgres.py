"""The PostgreSQL plumbing (stores/_postgres.py): URLs, deadlines, error mapping, migrations, the
``db`` CLI, and faults on a real server (held locks, ``pg_terminate_backend``, no server at all)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from extapi_kit.cli import main
from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError
from extapi_kit.idempotency.store_postgres import PostgresIdempotencyStore
from extapi_kit.keys.store_postgres import PostgresKeyStore
from extapi_kit.stores import _postgres as pg
from extapi_kit.stores import store_from_url
from extapi_kit.usage.store_postgres import PostgresUsageStore
from tests.support.postgres import sql

pytestmark = [pytest.mark.anyio]


def test_url_options_are_parsed_and_stripped() -> None:
    """P1: ?schema= and deadline options configure the store and never reach the driver."""
    c = pg.parse_postgres_url(
        "postgres://u:secret@db.internal:6543/app?schema=extapi&sslmode=disable"
        "&statement_timeout=1.5&pool_max=4&table_prefix=",
        pool_timeout=3,
    )
    assert c.dsn == "postgresql://u:secret@db.internal:6543/app?sslmode=disable"
    assert (c.schema, c.table_prefix, c.statement_timeout, c.pool_max, c.pool_timeout) == (
        "extapi",
        "",
        1.5,
        4,
        3.0,
    )
    assert c.table("api_keys") == "extapi.api_keys" and c.channel == "extapi."
    assert "secret" not in repr(c) and "db.internal:6543/app" in repr(c)
    assert "secret" not in repr(PostgresKeyStore(c))


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("mysql://x/db", {}),
        ("postgresql://x/db?schema=Bad-Name", {}),
        ("postgresql://x/db?table_prefix=1x", {}),
        ("postgresql://x/db?statement_timeout=0", {}),
        ("postgresql://x/db?connect_timeout=nan", {}),
        ("postgresql://x/db?pool_max=two", {}),
        ("postgresql://x/db?pool_min=5&pool_max=2", {}),
        ("postgresql://x/db", {"bogus": 1}),
    ],
)
def test_bad_urls_and_options_are_refused(url: str, options: dict[str, object]) -> None:
    """P1: a bad scheme, schema, prefix, deadline or pool size is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        pg.parse_postgres_url(url, **options)


def test_placeholders_and_row_counts() -> None:
    """Shared ``?`` SQL is renumbered for asyncpg; command tags give the changed row count."""
    assert pg.pg_sql("SELECT ? WHERE a = ? AND b = ?") == "SELECT $1 WHERE a = $2 AND b = $3"
    assert [pg.rowcount(s) for s in ("INSERT 0 1", "UPDATE 3", "DELETE 0", "LISTEN")] == [
        1,
        3,
        0,
        0,
    ]


def test_driver_errors_map_to_the_error_tree() -> None:
    """P2: lost connections, deadlines, lock waits and admin kills are 'unavailable'; others not."""
    import asyncpg

    unavailable = [
        TimeoutError(),
        ConnectionRefusedError(),
        asyncpg.InterfaceError("closed"),
        asyncpg.exceptions.QueryCanceledError("statement timeout"),
        asyncpg.exceptions.AdminShutdownError("terminated"),
        asyncpg.exceptions.LockNotAvailableError("lock"),
        asyncpg.exceptions.TooManyConnectionsError("too many"),
    ]
    for exc in unavailable:
        assert isinstance(pg.wrap_pg_error(exc), StoreUnavailableError), exc
    other = pg.wrap_pg_error(asyncpg.exceptions.UndefinedTableError("secret_table"))
    assert type(other) is StoreError and "secret_table" not in str(other)
    mine = StoreError("x")
    assert pg.wrap_pg_error(mine) is mine


def test_migrations_must_be_numbered_in_order() -> None:
    """Migrations are versions 1..n of a feature; anything else is refused at registration."""
    with pytest.raises(ConfigurationError):
        pg.register_migrations("bad", [pg.Migration(2, "x", "SELECT 1")])
    assert "bad" not in pg.registered_migrations()


@pytest.fixture
async def idem(pg_url: str) -> AsyncIterator[PostgresIdempotencyStore]:
    store = PostgresIdempotencyStore.from_url(pg_url, statement_timeout=0.5)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.mark.postgres
async def test_no_server_is_unavailable_within_the_deadline() -> None:
    """P3: a port with no server answers StoreUnavailableError quickly; ping() is False."""
    store = store_from_url(
        "idempotency", "postgresql://postgres@127.0.0.1:9/x?connect_timeout=0.5&pool_timeout=0.5"
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await store.get("k")
    assert not await store.ping()
    assert time.monotonic() - started < 3
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.get("k")


@pytest.mark.postgres
async def test_statement_blocked_by_a_held_lock_fails_within_the_deadline(
    idem: PostgresIdempotencyStore, pg_url: str
) -> None:
    """P4: a row lock held elsewhere makes a write fail as unavailable within its deadline
    (the idempotency middleware answers 503), and the store works again once the lock goes."""
    import asyncpg

    first = await idem.begin("k", "fp", now=1.0, lease=60)
    assert first.token
    schema = pg_url.split("schema=")[1]
    holder = await asyncpg.connect(pg_url.split("?")[0])
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(f"SELECT * FROM {schema}.extapi_idempotency FOR UPDATE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await idem.release("k", first.token)
        assert time.monotonic() - started < 2.0
        await tx.rollback()
    finally:
        await holder.close()
    assert await idem.release("k", first.token)


@pytest.mark.postgres
async def test_terminated_connections_fail_as_unavailable_and_recover(
    idem: PostgresIdempotencyStore, pg_url: str
) -> None:
    """P5: pg_terminate_backend mid-traffic gives StoreUnavailableError (503), never another
    error, and the pool reconnects by itself: later calls succeed without a restart."""
    errors: list[BaseException] = []
    done = 0

    async def traffic(n: int) -> None:
        nonlocal done
        for i in range(40):
            try:
                got = await idem.begin(f"w{n}-{i}", "fp", now=1.0, lease=60)
                assert got.token
                await idem.release(f"w{n}-{i}", got.token)
                done += 1
            except StoreError as exc:
                errors.append(exc)
            await asyncio.sleep(0.002)

    async def killer() -> None:
        for _ in range(3):
            await asyncio.sleep(0.03)
            await sql(
                pg_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'extapi_kit' AND datname = current_database()",
            )

    await asyncio.gather(*(traffic(n) for n in range(4)), killer())
    assert all(isinstance(e, StoreUnavailableError) for e in errors), errors
    assert done > 0
    assert await idem.ping() and (await idem.begin("after", "fp", now=1.0, lease=60)).acquired


@pytest.mark.postgres
async def test_missing_tables_without_migrate_are_a_store_error(pg_url: str) -> None:
    """migrate=False (operators run `db migrate`): missing tables are a StoreError, not 'down'."""
    store = PostgresUsageStore.from_url(pg_url, migrate=False)
    try:
        with pytest.raises(StoreError) as info:
            await store.quota_used("x")
        assert not isinstance(info.value, StoreUnavailableError)
    finally:
        await store.aclose()


@pytest.mark.postgres
async def test_listener_reconnects_and_drops_the_cache_when_its_connection_dies(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A6: a killed LISTEN connection tells watchers to drop everything ("*"), reconnects by
    itself, and the next change reaches other processes' stores again."""
    import extapi_kit.stores._pg_listener as mod
    from tests.keys.test_store_contract import make

    monkeypatch.setattr(mod, "RECONNECT_DELAY", 0.05)
    writer, reader = PostgresKeyStore.from_url(pg_url), PostgresKeyStore.from_url(pg_url)
    seen: list[str] = []
    try:
        rec = make()
        await writer.create(rec)
        await reader.watch(seen.append)
        await sql(
            pg_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'",
        )
        for _ in range(200):
            subscribed = reader._listener.subscribed
            if "*" in seen and subscribed is not None and subscribed.is_set():
                break
            await asyncio.sleep(0.01)
        assert "*" in seen
        await asyncio.sleep(0.2)  # LISTEN re-established
        await writer.update(rec)
        for _ in range(100):
            if rec.id in seen:
                break
            await asyncio.sleep(0.01)
        assert rec.id in seen
    finally:
        await writer.aclose()
        await reader.aclose()


@pytest.mark.postgres
def test_db_cli_migrates_and_reports(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`extapi-kit db status/migrate` show pending versions, apply them once, and --check."""
    assert main(["db", "status", "--check", "--store", pg_url]) == 1
    assert "keys: version 0 of 1, pending: v1" in capsys.readouterr().out
    assert main(["db", "migrate", "--store", pg_url]) == 0
    assert "keys: applied v1" in capsys.readouterr().out
    assert main(["db", "migrate", "--json", "--store", pg_url]) == 0
    assert '"keys": []' in capsys.readouterr().out
    assert main(["db", "status", "--json", "--check", "--store", pg_url]) == 0
    assert '"pending": []' in capsys.readouterr().out
    assert main(["db", "migrate", "--store", pg_url]) == 0
    assert "keys: up to date" in capsys.readouterr().out


@pytest.mark.postgres
def test_db_migrate_in_a_fresh_process_knows_every_feature(pg_url: str) -> None:
    """P5: `extapi-kit db migrate` run on its own (nothing imported before it, as an operator
    runs it ahead of a deploy) creates the tables of every PostgreSQL store, the ones whose
    modules register themselves (credits, signing keys, leak reports) included."""
    out = subprocess.run(
        [sys.executable, "-m", "extapi_kit.cli", "db", "migrate", "--json", "--store", pg_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    applied = json.loads(out)
    every = {"activity", "audit", "credits", "idempotency", "keys", "leaks", "plans"}
    every |= {"signing_keys", "usage", "webhooks"}
    assert set(applied) == every
    assert all(applied[feature] for feature in every), applied


def test_db_cli_needs_a_postgres_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --store or $DATABASE_URL, or with another scheme, `db` exits 1 with a message."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("EXTAPI_KIT_STORE", raising=False)
    assert main(["db", "status"]) == 1
    assert "--store" in capsys.readouterr().err
    assert main(["db", "migrate", "--store", "sqlite:///x.db"]) == 1
    assert "PostgreSQL" in capsys.readouterr().err


@pytest.mark.postgres
async def test_usage_store_edges(pg_url: str) -> None:
    """Empty batches and day lists cost no query; reprs name the place, never the password."""
    store = PostgresUsageStore.from_url(pg_url.replace("postgres@", "postgres:pw@"))
    try:
        await store.add({}, ttl=60)
        assert await store.days("k:x", []) == {}
        await store.add({("k:x", "2026-11-02", "served"): 2}, ttl=60)
        assert await store.days("k:x", ["2026-11-01", "2026-11-03"]) == {
            "2026-11-01": {},
            "2026-11-03": {},
        }
        assert "pw" not in repr(store) and "PostgresUsageStore" in repr(store)
        assert "pw" not in repr(store._db)
    finally:
        await store.aclose()


@pytest.mark.postgres
async def test_unknown_feature_cannot_be_migrated(pg_url: str) -> None:
    """migrate() refuses a feature nobody registered."""
    db = pg.PostgresDatabase(pg.parse_postgres_url(pg_url), migrate_on_start=False)
    try:
        with pytest.raises(ConfigurationError):
            await db.run(lambda c: pg.migrate(c, db.config, ["nope"]))
    finally:
        await db.aclose()


@pytest.mark.postgres
async def test_sessions_run_without_jit_and_with_their_deadlines(pg_url: str) -> None:
    """P2: every pooled session has JIT off (compiling the outbox claim cost ~11 ms of ~12.5 on a
    small unanalyzed table) and the statement and lock deadlines set."""
    db = pg.PostgresDatabase(pg.parse_postgres_url(pg_url, statement_timeout=1.5))
    try:
        jit = await db.fetchrow("SHOW jit")
        statement = await db.fetchrow("SHOW statement_timeout")
        lock = await db.fetchrow("SHOW lock_timeout")
    finally:
        await db.aclose()
    assert jit is not None and jit[0] == "off"
    assert statement is not None and statement[0] == "1500ms"
    assert lock is not None and lock[0] == "1500ms"
