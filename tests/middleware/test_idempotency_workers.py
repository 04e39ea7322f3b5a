"""IdempotencyMiddleware across workers (shared SQLite file, shared Redis), Redis outages, and
real HTTP under uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from extapi_kit.idempotency import MemoryIdempotencyStore
from extapi_kit.middleware.idempotency import IdempotencyMiddleware
from tests.idempotency.support import KEY, Recorder, client, counting_app, outer_layer
from tests.support.redis_server import RedisServer
from tests.support.serving import serving

pytestmark = pytest.mark.anyio

HEADERS = {"idempotency-key": KEY, "content-type": "application/json"}


@pytest.fixture(params=["sqlite", "redis", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/idem.db"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("redis_url"))


async def test_two_workers_share_records(shared_url: str) -> None:
    """A retry landing on another worker (own middleware, same backend) gets the replay (I1)."""
    rec = Recorder()
    w1 = IdempotencyMiddleware(counting_app(rec), store=shared_url)
    w2 = IdempotencyMiddleware(counting_app(rec), store=shared_url)
    try:
        async with client(w1) as c1, client(w2) as c2:
            first = await c1.post("/orders", content=b"{}", headers=HEADERS)
            retry = await c2.post("/orders", content=b"{}", headers=HEADERS)
            mismatch = await c2.post("/orders", content=b"{ }", headers=HEADERS)
    finally:
        await w1.aclose()
        await w2.aclose()
    assert rec.calls == 1 and retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true" and mismatch.status_code == 422


async def test_two_workers_race_one_executes(shared_url: str) -> None:
    """I2 across workers: 20 concurrent requests split over two workers run the app once."""
    rec = Recorder(gate=anyio.Event())
    # A generous store deadline: this test is about exactly-once across workers, not about the
    # fail-closed 503 a loaded CI box can trigger with the default 0.5 s (tested elsewhere).
    workers = [
        IdempotencyMiddleware(counting_app(rec), store=shared_url, store_timeout=10)
        for _ in range(2)
    ]
    statuses: list[int] = []
    others_answered = anyio.Event()
    # Open both workers' connections first, one after the other: on SQLite the first connection
    # switches the file to WAL and creates the table, and a loaded CI box once saw that cold
    # start collide with the race below ("database is locked" -> a correct fail-closed 503).
    for w in workers:
        await w.store.get("warm-up")
    try:
        async with client(workers[0]) as c1, client(workers[1]) as c2:

            async def one(c: httpx.AsyncClient) -> None:
                r = await c.post("/orders", content=b"{}", headers=HEADERS)
                statuses.append(r.status_code)
                if len(statuses) == 19:
                    others_answered.set()

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, c1 if i % 2 else c2)
                await others_answered.wait()
                assert rec.gate is not None
                rec.gate.set()
    finally:
        for w in workers:
            await w.aclose()
    assert rec.calls == 1 and sorted(statuses) == [201] + [409] * 19


@pytest.mark.redis
async def test_redis_killed_fails_closed_then_recovers(private_redis: RedisServer) -> None:
    """Redis killed: keyed writes get 503 and the app is NOT called; after a restart all works."""
    rec = Recorder()
    mw = IdempotencyMiddleware(counting_app(rec), store=private_redis.url, store_timeout=0.5)
    app = outer_layer(mw, rec)
    try:
        async with client(app) as c:
            assert (await c.post("/orders", content=b"{}", headers=HEADERS)).status_code == 201
            private_redis.kill()
            assert not await mw.store.ping()
            down = await c.post("/orders", content=b"{}", headers=HEADERS)
            other = await c.post("/orders", content=b"{}", headers={"idempotency-key": "k2"})
            assert down.status_code == other.status_code == 503
            assert down.headers["retry-after"] == "5"
            assert rec.calls == 1
            private_redis.start()
            assert await mw.store.ping()
            fresh = await c.post("/orders", content=b"{}", headers={"idempotency-key": "k3"})
            assert fresh.status_code == 201 and rec.calls == 2
    finally:
        await mw.aclose()
    assert rec.outcomes == ["stored", "unavailable", "unavailable", "stored"]


@pytest.mark.redis
async def test_redis_paused_fails_closed_within_deadline(private_redis: RedisServer) -> None:
    """A hung Redis (SIGSTOP) is bounded by store_timeout: 503, app not called, no hang."""
    rec = Recorder()
    mw = IdempotencyMiddleware(counting_app(rec), store=private_redis.url, store_timeout=0.2)
    try:
        async with client(mw) as c:
            await c.post("/orders", content=b"{}", headers={"idempotency-key": "warm"})
            private_redis.pause()
            try:
                with anyio.fail_after(10):  # a guard against a hang, not a timing assertion
                    r = await c.post("/orders", content=b"{}", headers=HEADERS)
            finally:
                private_redis.resume()
    finally:
        await mw.aclose()
    assert r.status_code == 503 and rec.calls == 1


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, Recorder, MemoryIdempotencyStore, anyio.Event]]:
    """The middleware over the counting app, served by uvicorn on 127.0.0.1."""
    rec = Recorder()
    store = MemoryIdempotencyStore()
    done = anyio.Event()
    inner = outer_layer(IdempotencyMiddleware(counting_app(rec), store=store), rec)

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        try:
            await inner(scope, receive, send)  # type: ignore[arg-type]
        finally:
            done.set()

    async with serving(app, lifespan="off", ws="none") as base:
        yield int(base.rsplit(":", 1)[1]), rec, store, done


async def test_real_http_disconnect_mid_body(
    served: tuple[int, Recorder, MemoryIdempotencyStore, anyio.Event],
) -> None:
    """M1 over real HTTP: 30 KB of a declared 100 KB body, then close: no app call, no record."""
    port, rec, store, done = served
    head = (
        "POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {KEY}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(head + b"x" * 30_000)
    await stream.aclose()
    with anyio.fail_after(10):  # a guard against a hang, not a timing assertion
        await done.wait()
    assert rec.calls == 0 and len(store) == 0 and rec.outcomes == ["aborted"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        ok = await c.post("/orders", content=b"x" * 100_000, headers=HEADERS)
        replay = await c.post("/orders", content=b"x" * 100_000, headers=HEADERS)
    assert ok.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert rec.calls == 1 and rec.bodies == [b"x" * 100_000]
