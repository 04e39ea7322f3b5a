"""KeyService under real conditions: event-loop lag, cross-process revocation, store outages."""

from __future__ import annotations

import asyncio
import time

import pytest

from extapi_kit.exceptions import InvalidKeyError, StoreError
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_redis import RedisKeyStore
from extapi_kit.keys.store_sqlite import SQLiteKeyStore
from extapi_kit.testing import FakeClock
from tests.keys.support import cheap_hasher
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


class LagProbe:
    """A task that sleeps 1 ms in a loop and records the largest gap between wake-ups."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._stop = False

    async def run(self) -> None:
        last = time.perf_counter()
        while not self._stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    def stop(self) -> None:
        self._stop = True


@pytest.mark.slow
async def test_concurrent_first_time_verifies_keep_the_loop_responsive() -> None:
    """20 concurrent cold verifies at the real default argon2 cost keep loop lag < 50 ms (A5)."""
    svc = KeyService("memory://", verify_concurrency=2)  # default argon2id parameters
    created = await asyncio.gather(*(svc.create(f"k{i}") for i in range(20)))
    probe = LagProbe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.01)
    principals = await asyncio.gather(*(svc.verify(key) for _, key in created))
    probe.stop()
    await task
    assert {p.key_id for p in principals} == {rec.id for rec, _ in created}
    assert probe.max_gap < 0.05, f"event loop stalled for {probe.max_gap * 1000:.1f} ms"
    await svc.aclose()


@pytest.mark.redis
async def test_revocation_reaches_a_second_process_within_a_second(redis_url: str) -> None:
    """Revoking in one process makes a second process refuse its cached key within 1 s (A6)."""
    clock = FakeClock()  # frozen: the cache TTL can never be what drops the key
    worker_a = KeyService(RedisKeyStore.from_url(redis_url), hasher=cheap_hasher(), clock=clock)
    worker_b = KeyService(
        RedisKeyStore.from_url(redis_url), hasher=cheap_hasher(), clock=clock, cache_ttl=3600
    )
    try:
        rec, key = await worker_a.create("shared")
        assert (await worker_b.verify(key)).key_id == rec.id
        await worker_b.verify(key)  # served from B's positive cache now
        await worker_a.revoke(rec.id)
        revoked_at = time.monotonic()
        refused = False
        while time.monotonic() - revoked_at < 1.0:
            try:
                await worker_b.verify(key)
            except InvalidKeyError:
                refused = True
                break
            await asyncio.sleep(0.01)
        assert refused, "second process still accepted the revoked key after 1 s"
    finally:
        await worker_a.store.aclose()
        await worker_b.store.aclose()


@pytest.mark.redis
async def test_store_down_cached_keys_work_others_fail_closed(
    private_redis: RedisServer,
) -> None:
    """With Redis dead, cached keys work until their TTL; uncached ones raise StoreError (§6)."""
    clock = FakeClock()
    svc = KeyService(RedisKeyStore.from_url(private_redis.url), hasher=cheap_hasher(), clock=clock)
    try:
        _, cached = await svc.create("cached")
        _, cold = await svc.create("cold")
        await svc.verify(cached)
        private_redis.kill()
        assert (await svc.verify(cached)).name == "cached"
        with pytest.raises(StoreError):
            await svc.verify(cold)
        clock.advance(11)
        with pytest.raises(StoreError):
            await svc.verify(cached)
    finally:
        await svc.store.aclose()


async def test_sqlite_revocation_from_another_process_is_bounded_by_ttl(tmp_path: object) -> None:
    """With SQLite, another process sees a revocation when its cache entry expires (TTL)."""
    path = f"{tmp_path}/keys.db"
    clock = FakeClock()
    admin = KeyService(SQLiteKeyStore(path), hasher=cheap_hasher(), clock=clock)
    worker = KeyService(SQLiteKeyStore(path), hasher=cheap_hasher(), clock=clock, cache_ttl=10)
    try:
        rec, key = await admin.create("k")
        await worker.verify(key)
        await admin.revoke(rec.id)
        assert (await worker.verify(key)).key_id == rec.id  # still cached: documented bound
        clock.advance(10)
        with pytest.raises(InvalidKeyError):
            await worker.verify(key)
    finally:
        await admin.store.aclose()
        await worker.store.aclose()
