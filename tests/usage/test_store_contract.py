"""The UsageStore contract, run against memory, SQLite, Redis, a Redis Cluster and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import extapi_kit.usage  # noqa: F401  (registers the "usage" store kind)
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores import registered_schemes, store_from_url
from extapi_kit.usage import QuotaCheck, UsageStore

TTL = 400 * 86400


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[UsageStore]:
    s: UsageStore = store_from_url("usage", any_contract_store_url)
    try:
        yield s
    finally:
        await s.aclose()


@pytest.mark.anyio
async def test_batches_accumulate_per_subject_day_and_field(store: UsageStore) -> None:
    """Two batches add up per (subject, day, field); other subjects and days stay apart."""
    await store.add(
        {("k:a", "2026-11-01", "c:read"): 2, ("k:a", "2026-11-01", "served"): 2}, ttl=TTL
    )
    await store.add(
        {("k:a", "2026-11-01", "c:read"): 3, ("k:b", "2026-11-02", "c:write"): 1}, ttl=TTL
    )
    got = await store.days("k:a", ["2026-10-31", "2026-11-01", "2026-11-02"])
    assert got == {
        "2026-10-31": {},
        "2026-11-01": {"c:read": 5, "served": 2},
        "2026-11-02": {},
    }
    assert (await store.days("k:b", ["2026-11-02"]))["2026-11-02"] == {"c:write": 1}


@pytest.mark.anyio
async def test_consume_admits_exactly_the_limit_under_concurrency(store: UsageStore) -> None:
    """Forty concurrent charges against a limit of 25 admit exactly 25, distinct counts (L1, L2)."""
    check = QuotaCheck("k:a:monthly:2026-11", 25, 3600)
    results = await asyncio.gather(*(store.consume([check], 1) for _ in range(40)))
    allowed = [used[0] for ok, used in results if ok]
    assert sorted(allowed) == list(range(1, 26))
    assert all(used == [25] for ok, used in results if not ok)
    assert await store.quota_used("k:a:monthly:2026-11") == 25


@pytest.mark.anyio
async def test_consume_is_all_or_none_over_several_counters(store: UsageStore) -> None:
    """A charge that would overrun the owner's counter charges neither counter."""
    key = QuotaCheck("k:a:monthly:2026-11", 100, 3600)
    owner = QuotaCheck("o:acme:monthly:2026-11", 3, 3600)
    assert await store.consume([key, owner], 2) == (True, [2, 2])
    assert await store.consume([key, owner], 2) == (False, [2, 2])
    assert await store.consume([key, owner], 1) == (True, [3, 3])
    assert await store.consume([key, owner], 0) == (True, [3, 3])
    assert await store.quota_used("k:a:monthly:2026-11") == 3
    assert await store.quota_used("k:unknown:monthly:2026-11") == 0


@pytest.mark.anyio
async def test_mark_once_is_true_for_one_caller(store: UsageStore) -> None:
    """Of ten concurrent mark attempts exactly one wins; another mark is independent."""
    results = await asyncio.gather(
        *(store.mark_once("k:a:monthly:2026-11:80", ttl=60) for _ in range(10))
    )
    assert results.count(True) == 1
    assert await store.mark_once("k:a:monthly:2026-11:100", ttl=60)


@pytest.mark.anyio
async def test_prune_keeps_days_from_the_cutoff(store: UsageStore) -> None:
    """Pruning never deletes a day at or after the cutoff (Redis expires days by TTL instead)."""
    await store.add(
        {("k:a", "2025-01-31", "c:read"): 1, ("k:a", "2025-02-01", "c:read"): 1}, ttl=TTL
    )
    removed = await store.prune("2025-02-01")
    got = await store.days("k:a", ["2025-01-31", "2025-02-01"])
    assert got["2025-02-01"] == {"c:read": 1}
    if removed:
        assert got["2025-01-31"] == {}
    assert await store.ping()


@pytest.mark.anyio
async def test_counters_survive_a_new_store_instance(durable_url: str) -> None:
    """A fresh store on the same SQLite file or Redis reads the old one's counters and quota."""
    first: UsageStore = store_from_url("usage", durable_url)
    await first.add({("k:a", "2026-11-01", "c:read"): 7}, ttl=TTL)
    await first.consume([QuotaCheck("k:a:monthly:2026-11", 10, 3600)], 4)
    await first.aclose()
    second: UsageStore = store_from_url("usage", durable_url)
    try:
        assert (await second.days("k:a", ["2026-11-01"]))["2026-11-01"] == {"c:read": 7}
        assert await second.quota_used("k:a:monthly:2026-11") == 4
    finally:
        await second.aclose()


def test_registry_names_the_usage_schemes() -> None:
    """The usage kind is registered for memory, sqlite, redis(s), postgres(ql); others refused."""
    assert registered_schemes("usage") == [
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
    with pytest.raises(ConfigurationError, match="sqlite://"):
        store_from_url("usage", "mysql://x")
