"""The ActivityStore contract, run against memory, SQLite, Redis, a Redis Cluster and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import extapi_kit.analytics  # noqa: F401  (registers the "activity" store kind)
from extapi_kit.analytics import ActivityStore, KeyActivity
from extapi_kit.analytics.model import Delta
from extapi_kit.stores import registered_schemes, store_from_url

TTL = 31 * 86400


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[ActivityStore]:
    s: ActivityStore = store_from_url("activity", any_contract_store_url)
    try:
        yield s
    finally:
        await s.aclose()


def test_every_backend_is_registered() -> None:
    """The activity kind has the same schemes as the other durable stores."""
    assert {"memory", "sqlite", "redis", "redis+cluster", "postgresql"} <= set(
        registered_schemes("activity")
    )


@pytest.mark.anyio
async def test_save_is_compare_and_set(store: ActivityStore) -> None:
    """A write succeeds only against the version it read; a stale writer is refused."""
    assert await store.load("k1") == (0, None)
    assert await store.save("k1", 0, '{"a":1}', ttl=TTL)
    assert not await store.save("k1", 0, '{"a":2}', ttl=TTL)  # someone inserted first
    version, doc = await store.load("k1")
    assert (version, doc) == (1, '{"a":1}')
    assert await store.save("k1", 1, '{"a":3}', ttl=TTL)
    assert not await store.save("k1", 1, '{"a":4}', ttl=TTL)
    assert await store.load("k1") == (2, '{"a":3}')
    assert await store.load("k2") == (0, None)
    assert await store.ping()


@pytest.mark.anyio
async def test_concurrent_flushers_never_lose_counts(store: ActivityStore) -> None:
    """Ten recorders flushing the same key at once add up exactly (the losers re-merge)."""
    recorders = [KeyActivity(store) for _ in range(10)]
    for i, rec in enumerate(recorders):
        delta = rec._pending["k1"] = Delta(verified=True)
        delta.count("2026-12-04", "2xx", 3)
        delta.ips[f"198.51.100.{i}"] = [1, 1_796_000_000.0, 1_796_000_000.0]
    for rec in recorders:
        rec.clock = lambda: 1_796_000_100.0
    await asyncio.gather(*(r.flush() for r in recorders))
    got = await recorders[0].get("k1")
    assert got["status"]["2xx"] == 30
    assert len(got["ips"]) == 10
