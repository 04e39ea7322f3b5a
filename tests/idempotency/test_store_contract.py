"""One contract suite for every idempotency store backend (memory, sqlite, redis, postgresql)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from extapi_kit.idempotency import IdempotencyStore, StoredResponse
from extapi_kit.stores import store_from_url

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
RESPONSE = StoredResponse(
    status=201,
    headers=((b"content-type", b"application/json"), (b"x-odd", b"\xe9t\xe9")),
    body=b'{"id": 1}\x00\xff',
)


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[IdempotencyStore]:
    s: IdempotencyStore = store_from_url("idempotency", any_contract_store_url)
    try:
        yield s
    finally:
        await s.aclose()


async def test_begin_then_complete_then_get(store: IdempotencyStore) -> None:
    """A begun record blocks a second begin, and completing it stores the exact response (I1)."""
    first = await store.begin("k1", "fp", now=T0, lease=60)
    assert first.acquired and first.token
    second = await store.begin("k1", "fp", now=T0 + 1, lease=60)
    assert not second.acquired
    assert second.existing is not None and second.existing.state == "in_flight"
    assert await store.complete("k1", first.token, RESPONSE, now=T0 + 2, ttl=3600)
    third = await store.begin("k1", "fp", now=T0 + 3, lease=60)
    assert not third.acquired and third.existing is not None
    assert third.existing.state == "completed"
    assert third.existing.response == RESPONSE
    assert third.existing.fingerprint == "fp"
    rec = await store.get("k1")
    assert rec is not None and rec.response == RESPONSE and rec.expires_at == T0 + 2 + 3600


async def test_truncated_flag_round_trips(store: IdempotencyStore) -> None:
    """A record stored as too large keeps its truncated flag and status on every backend."""
    begun = await store.begin("big", "fp", now=T0, lease=60)
    assert begun.token is not None
    truncated = StoredResponse(status=200, headers=(), body=b"", truncated=True)
    assert await store.complete("big", begun.token, truncated, now=T0, ttl=60)
    rec = await store.get("big")
    assert rec is not None and rec.response == truncated


async def test_complete_and_release_need_the_owner_token(store: IdempotencyStore) -> None:
    """Only the token returned by begin may complete or release the in-flight record."""
    begun = await store.begin("k2", "fp", now=T0, lease=60)
    assert not await store.complete("k2", "not-the-token", RESPONSE, now=T0, ttl=60)
    assert not await store.release("k2", "not-the-token")
    assert not await store.complete("missing", "t", RESPONSE, now=T0, ttl=60)
    assert begun.token is not None
    assert await store.release("k2", begun.token)
    assert await store.get("k2") is None
    again = await store.begin("k2", "fp", now=T0, lease=60)
    assert again.acquired


async def test_release_never_deletes_a_completed_record(store: IdempotencyStore) -> None:
    """Releasing after completion is a no-op, so a stored response cannot be lost by cleanup."""
    begun = await store.begin("k3", "fp", now=T0, lease=60)
    assert begun.token is not None
    assert await store.complete("k3", begun.token, RESPONSE, now=T0, ttl=60)
    assert not await store.release("k3", begun.token)
    assert await store.get("k3") is not None


async def test_expired_lease_is_taken_over(store: IdempotencyStore) -> None:
    """A lock whose lease ended is taken over, and the old owner can no longer complete it."""
    old = await store.begin("k4", "fp", now=T0, lease=10)
    new = await store.begin("k4", "fp2", now=T0 + 10, lease=10)
    assert new.acquired and new.token != old.token
    assert old.token is not None
    assert not await store.complete("k4", old.token, RESPONSE, now=T0 + 11, ttl=60)
    rec = await store.get("k4")
    assert rec is not None and rec.fingerprint == "fp2"


async def test_expired_key_is_reusable(store: IdempotencyStore) -> None:
    """I5: once the TTL has passed, the same key starts a fresh request (any payload)."""
    begun = await store.begin("k5", "fp", now=T0, lease=60)
    assert begun.token is not None
    await store.complete("k5", begun.token, RESPONSE, now=T0, ttl=86400)
    assert not (await store.begin("k5", "other", now=T0 + 86399, lease=60)).acquired
    assert (await store.begin("k5", "other", now=T0 + 86400, lease=60)).acquired


async def test_prune_never_deletes_in_flight(store: IdempotencyStore) -> None:
    """I5: prune drops expired records but never one whose lock lease is still running."""
    old = await store.begin("done", "fp", now=T0, lease=60)
    assert old.token is not None
    await store.complete("done", old.token, RESPONSE, now=T0, ttl=10)
    await store.begin("running", "fp", now=T0, lease=3600)
    await store.begin("abandoned", "fp", now=T0, lease=5)
    assert await store.prune(now=T0 + 30) == 2
    assert await store.get("done") is None
    assert await store.get("abandoned") is None
    running = await store.get("running")
    assert running is not None and running.state == "in_flight"
    assert await store.prune(now=T0 + 30) == 0


async def test_concurrent_begin_acquires_once(store: IdempotencyStore) -> None:
    """I2 at store level: 20 concurrent begins on one key grant exactly one lock."""
    results: list[bool] = []

    async def one() -> None:
        results.append((await store.begin("race", "fp", now=T0, lease=60)).acquired)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert results.count(True) == 1 and len(results) == 20


async def test_ping(store: IdempotencyStore) -> None:
    """Every backend answers ping with True while it is up."""
    assert await store.ping() is True


async def test_repr_shows_no_record_data(store: IdempotencyStore) -> None:
    """A store's repr names its backend but never a record key, fingerprint or body."""
    await store.begin("a" * 64, "fp-secretish", now=T0, lease=60)
    text = repr(store)
    assert "IdempotencyStore" in text
    assert "aaaa" not in text and "secretish" not in text


async def test_two_sqlite_stores_share_one_file(tmp_path: Path) -> None:
    """Two store instances (two workers) on one SQLite file see and respect each other's locks."""
    url = f"sqlite:///{tmp_path}/shared.db"
    a: IdempotencyStore = store_from_url("idempotency", url)
    b: IdempotencyStore = store_from_url("idempotency", url)
    try:
        got = await a.begin("k", "fp", now=T0, lease=60)
        assert got.token is not None
        assert not (await b.begin("k", "fp", now=T0, lease=60)).acquired
        assert await a.complete("k", got.token, RESPONSE, now=T0, ttl=60)
        seen = await b.begin("k", "fp", now=T0, lease=60)
        assert seen.existing is not None and seen.existing.response == RESPONSE
    finally:
        await a.aclose()
        await b.aclose()


async def test_store_from_url_names_idempotency_schemes() -> None:
    """The registry knows the idempotency kind with memory, sqlite, redis(s) and postgres(ql)."""
    from extapi_kit.stores import registered_schemes

    assert registered_schemes("idempotency") == [
        "memory",
        "postgres",
        "postgresql",
        "redis",
        "redis+cluster",
        "redis+sentinel",
        "rediss",
        "rediss+cluster",
        "rediss+sentinel",
        "sqlite",
    ]
