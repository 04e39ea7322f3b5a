"""PostgreSQL webhook store: the transactional outbox on the app's own connection (asyncpg,
psycopg, SQLAlchemy), LISTEN/NOTIFY wake-ups, and deliveries end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.webhooks import (
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    Event,
    WebhookDispatcher,
    publish_in_transaction,
)
from extapi_kit.webhooks.store_postgres import PostgresWebhookStore
from tests.support import postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

Body = Callable[[Any], Awaitable[Event]]
FLAVOURS = [
    "asyncpg",
    "psycopg",
    "sqlalchemy-connection",
    "sqlalchemy-session",
    "sqlalchemy-session-psycopg",
]


def _endpoint(url: str = "https://example.com/hook") -> Endpoint:
    secret = EndpointSecret(value="whsec_" + "A" * 32, created_at=time.time())
    return Endpoint(url=url, secrets=[secret], allow_loopback=True)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresWebhookStore]:
    s = PostgresWebhookStore.from_url(pg_url)
    await s.add_endpoint(_endpoint())  # also creates the tables
    yield s
    await s.aclose()


async def _in_app_transaction(flavour: str, url: str, body: Body, *, commit: bool) -> Event:
    """Run ``body(conn)`` in a transaction of the app's own driver, then commit or roll back."""
    dsn = url.split("?", 1)[0]
    if flavour == "asyncpg":
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS app_orders (id int)")
            await conn.execute("INSERT INTO app_orders VALUES (1)")
            event = await body(conn)
            await (tx.commit() if commit else tx.rollback())
            return event
        finally:
            await conn.close()
    if flavour == "psycopg":
        import psycopg

        pconn = await psycopg.AsyncConnection.connect(dsn)
        try:
            await pconn.execute("CREATE TEMP TABLE IF NOT EXISTS app_orders (id int)")
            event = await body(pconn)
            await (pconn.commit() if commit else pconn.rollback())
            return event
        finally:
            await pconn.close()
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    driver = "psycopg" if flavour.endswith("-psycopg") else "asyncpg"
    engine = create_async_engine(dsn.replace("postgresql://", f"postgresql+{driver}://", 1))
    try:
        if flavour == "sqlalchemy-connection":
            async with engine.connect() as sconn:
                await sconn.execute(text("CREATE TEMP TABLE app_orders (id int)"))
                event = await body(sconn)
                await (sconn.commit() if commit else sconn.rollback())
                return event
        async with AsyncSession(engine) as session:
            await session.execute(text("CREATE TEMP TABLE app_orders (id int)"))
            event = await body(session)
            await (session.commit() if commit else session.rollback())
            return event
    finally:
        await engine.dispose()


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("commit", [True, False], ids=["commit", "rollback"])
async def test_publish_in_transaction_commits_or_rolls_back_with_the_app(
    store: PostgresWebhookStore, pg_url: str, flavour: str, commit: bool
) -> None:
    """P6: an event written with the app's own connection (asyncpg, psycopg, SQLAlchemy
    AsyncConnection/AsyncSession) is stored and wakes the dispatchers only if the app commits."""
    woken = asyncio.Event()
    await store.listen_for_work(woken.set)
    await asyncio.sleep(0.05)  # the listener's own start-up wake-up
    woken.clear()

    async def body(conn: Any) -> Event:
        event: Event = await publish_in_transaction(conn, "order.created", {"id": 1}, store=store)
        return event

    event = await _in_app_transaction(flavour, pg_url, body, commit=commit)
    with pytest.raises(TimeoutError) if not commit else _nothing():
        await asyncio.wait_for(woken.wait(), 0.5)
    events = await store.list_events()
    deliveries = await store.list_deliveries()
    if commit:
        assert [e.id for e in events] == [event.id]
        assert [d.event_id for d in deliveries] == [event.id]
        assert deliveries[0].status == DeliveryStatus.PENDING
    else:
        assert events == [] and deliveries == []


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_publish_in_transaction_refuses_what_it_cannot_use(
    store: PostgresWebhookStore, pg_url: str
) -> None:
    """P6: an unknown object, an asyncpg connection outside a transaction, or a schema without
    the tables is a ConfigurationError, and the app's transaction is left usable."""
    import asyncpg

    with pytest.raises(ConfigurationError):
        await publish_in_transaction(object(), "t", {})
    conn = await asyncpg.connect(pg_url.split("?", 1)[0])
    try:
        with pytest.raises(ConfigurationError):
            await publish_in_transaction(conn, "t", {}, store=store)
        async with conn.transaction():
            with pytest.raises(ConfigurationError):
                await publish_in_transaction(conn, "t", {}, schema="nowhere")
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_publish_wakes_the_dispatcher_without_polling(pg_url: str) -> None:
    """P7: a dispatcher with a 60 s poll interval delivers a publish from another store object
    within milliseconds (LISTEN/NOTIFY wake-up, no busy polling)."""
    from tests.webhooks.receivers import Recorder, serve

    recorder = Recorder()
    async with serve(recorder) as base_url:
        publisher = PostgresWebhookStore.from_url(pg_url)
        await publisher.add_endpoint(_endpoint(base_url + "/hook"))
        worker_store = PostgresWebhookStore.from_url(pg_url)
        dispatcher = WebhookDispatcher(worker_store, poll_interval=60, allow_loopback=True)
        await dispatcher.start()
        try:
            await asyncio.sleep(0.2)  # the first poll happened; the next is 60 s away
            latencies = []
            for i in range(5):
                t0 = time.perf_counter()
                await _publish_via_store(publisher, i)
                await recorder.wait_for(i + 1, within=5)
                latencies.append(time.perf_counter() - t0)
            assert sorted(latencies)[2] < 0.1, latencies
        finally:
            await dispatcher.aclose()
            await publisher.aclose()


async def _publish_via_store(store: PostgresWebhookStore, i: int) -> None:
    from extapi_kit.webhooks.outbox import publish_event

    await publish_event(store, "job.done", {"i": i})


async def test_tables_live_in_the_store_schema(pg_url: str) -> None:
    """P6: the outbox tables are created in the URL's schema with the configured prefix."""
    s = PostgresWebhookStore.from_url(pg_url)
    try:
        await s.list_endpoints()
        schema = pg_url.rsplit("schema=", 1)[1]
        rows = await postgres.sql(
            pg_url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            schema,
        )
        names = {r[0] for r in rows}
        assert {"extapi_webhook_events", "extapi_webhook_deliveries"} <= names
    finally:
        await s.aclose()


async def test_send_test_is_recorded_as_a_test_delivery(pg_url: str) -> None:
    """P6: the "test" button's ping is stored on PostgreSQL as a delivery marked test, with its
    one manual attempt, and no dispatcher claims it."""
    from extapi_kit.webhooks import WebhookManager
    from tests.webhooks.receivers import Recorder, serve

    recorder = Recorder()
    store = PostgresWebhookStore.from_url(pg_url)
    try:
        async with serve(recorder) as base_url:
            manager = WebhookManager(store, allow_loopback=True)
            ep = await manager.add_endpoint(base_url + "/hook")
            result = await manager.send_test(ep.id)
        assert result.ok and len(recorder.requests) == 1
        [delivery] = await store.list_deliveries(endpoint_id=ep.id)
        assert delivery.test and delivery.status == DeliveryStatus.SUCCEEDED
        [attempt] = await store.list_attempts(delivery.id)
        assert attempt.manual and attempt.status == 200
        assert await store.claim(owner="w", now=time.time() + 3600, lease_seconds=5, limit=9) == []
    finally:
        await store.aclose()


async def test_listener_reconnects_after_its_connection_is_killed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P7: pg_terminate_backend on the LISTEN connection: the store reconnects by itself, wakes
    the dispatcher once (work committed meanwhile), and the next publish wakes it again."""
    import extapi_kit.stores._pg_listener as mod

    monkeypatch.setattr(mod, "RECONNECT_DELAY", 0.05)
    listener, publisher = (
        PostgresWebhookStore.from_url(pg_url),
        PostgresWebhookStore.from_url(pg_url),
    )
    await publisher.add_endpoint(_endpoint())
    woken = asyncio.Event()
    try:
        await listener.listen_for_work(woken.set)
        await asyncio.sleep(0.05)
        woken.clear()
        await postgres.sql(
            pg_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'",
        )
        await asyncio.wait_for(woken.wait(), 5)  # the reconnect's catch-up wake-up
        await asyncio.sleep(0.2)
        woken.clear()
        await _publish_via_store(publisher, 1)
        await asyncio.wait_for(woken.wait(), 2)
    finally:
        await listener.aclose()
        await publisher.aclose()
