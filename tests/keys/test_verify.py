"""The verify path's failure accounting: store outages never count (A15), a key id cannot be locked
out by others (A16), and hash work stays bounded under a wrong-secret flood (A4)."""

from __future__ import annotations

import asyncio

import pytest
import redis

from extapi_kit.exceptions import InvalidKeyError, StoreError, StoreUnavailableError
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.service import KeyService, KeyThrottledError
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.keys.store_redis import RedisKeyStore
from extapi_kit.testing import FakeClock
from tests.keys.support import SpyHasher, cheap_hasher, forge
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

VICTIM_IP = "198.51.100.10"
ATTACKER_IP = "203.0.113.66"


class OutageStore(MemoryKeyStore):
    """A memory store whose lookups fail with StoreUnavailableError while ``down`` is set."""

    down = False

    async def get(self, key_id: str) -> KeyRecord | None:
        if self.down:
            raise StoreUnavailableError("store down")
        return await super().get(key_id)


async def test_store_errors_never_count_as_failed_attempts() -> None:
    """A15: StoreUnavailableError during verify increments no failure counter (IP or key id)."""
    store = OutageStore()
    clock = FakeClock(1_800_000_000)
    svc = KeyService(store, hasher=SpyHasher(), clock=clock, failures_per_ip=3, failures_per_key=2)
    _, key = await svc.create("k")
    store.down = True
    for _ in range(50):
        with pytest.raises(StoreUnavailableError):
            await svc.verify(key, client_ip=VICTIM_IP)
    assert svc._throttle._counts == {} and svc._throttle._pending == {}
    store.down = False
    assert (await svc.verify(key, client_ip=VICTIM_IP)).name == "k"


async def test_redis_killed_and_restarted_does_not_lock_out_keys(
    private_redis: RedisServer,
) -> None:
    """A15: Redis killed (-9) and restarted with its data: 503s while down, then 200, never 429."""
    clock = FakeClock(1_800_000_000)
    svc = KeyService(
        RedisKeyStore.from_url(private_redis.url), hasher=cheap_hasher(), clock=clock, cache_ttl=5
    )
    try:
        _, key = await svc.create("in-use")
        assert (await svc.verify(key, client_ip=VICTIM_IP)).name == "in-use"
        admin = redis.Redis.from_url(private_redis.url, socket_timeout=2)
        try:
            admin.save()  # the restarted server loads this snapshot: "back with its data"
        finally:
            admin.close()
        private_redis.kill()  # SIGKILL
        clock.advance(6)  # past the positive cache TTL
        for _ in range(40):
            with pytest.raises(StoreError) as info:
                await svc.verify(key, client_ip=VICTIM_IP)
            assert not isinstance(info.value, InvalidKeyError)
        private_redis.start()  # same port, same data directory
        assert (await svc.verify(key, client_ip=VICTIM_IP)).name == "in-use"
    finally:
        await svc.aclose()
        await svc.store.aclose()


async def test_wrong_secrets_from_another_ip_do_not_lock_out_the_holder() -> None:
    """A16: a flood of wrong secrets for a key id from one IP never makes the holder's key 429."""
    clock = FakeClock(1_800_000_000)
    spy = SpyHasher()
    svc = KeyService(MemoryKeyStore(), hasher=spy, clock=clock, cache_ttl=10)
    rec, key = await svc.create("victim")
    assert (await svc.verify(key, client_ip=VICTIM_IP)).key_id == rec.id
    for _ in range(3):
        codes = []
        for _ in range(30):
            try:
                await svc.verify(forge(rec.display_prefix), client_ip=ATTACKER_IP)
            except KeyThrottledError:
                codes.append(429)
            except InvalidKeyError:
                codes.append(401)
        assert 429 in codes, codes
        clock.advance(11)  # the holder's cache entry has expired: a real verify is needed
        assert (await svc.verify(key, client_ip=VICTIM_IP)).key_id == rec.id
        clock.advance(50)
    # Hash work: failures_per_key (20) per window for the attacker's (IP, key id), plus the
    # holder's own verifies (one at the start and one per window).
    assert spy.verify_calls <= 3 * 20 + 4


async def test_budget_exhausted_still_verifies_a_clean_ip_but_not_a_failing_one() -> None:
    """A16: once a key id's failure budget is spent, only sources without recent failures hash."""
    clock = FakeClock(1_800_000_000)
    spy = SpyHasher()
    svc = KeyService(
        MemoryKeyStore(),
        hasher=spy,
        clock=clock,
        cache_ttl=0,
        failures_per_key=2,
        failure_budget_per_key=5,
    )
    rec, key = await svc.create("victim")
    for i in range(5):  # five attacker IPs, one failure each: the budget is spent
        with pytest.raises(InvalidKeyError):
            await svc.verify(forge(rec.display_prefix), client_ip=f"203.0.113.{i}")
    calls = spy.verify_calls
    # A source that already failed is refused before any hash work ...
    with pytest.raises(KeyThrottledError):
        await svc.verify(forge(rec.display_prefix), client_ip="203.0.113.0")
    with pytest.raises(KeyThrottledError):
        await svc.verify(key, client_ip="203.0.113.1")
    assert spy.verify_calls == calls
    # ... a fresh source is verified: the right secret passes, a wrong one spends its one try.
    assert (await svc.verify(key, client_ip=VICTIM_IP)).key_id == rec.id
    with pytest.raises(InvalidKeyError) as info:
        await svc.verify(forge(rec.display_prefix), client_ip="192.0.2.200")
    assert not isinstance(info.value, KeyThrottledError)
    with pytest.raises(KeyThrottledError):
        await svc.verify(forge(rec.display_prefix), client_ip="192.0.2.200")
    assert spy.verify_calls == calls + 2
    # IPv6 sources are counted per /64, so rotating addresses inside one prefix gains nothing.
    with pytest.raises(InvalidKeyError):
        await svc.verify(forge(rec.display_prefix), client_ip="2001:db8:1:2::1")
    with pytest.raises(KeyThrottledError):
        await svc.verify(forge(rec.display_prefix), client_ip="2001:db8:1:2::ffff")


class SlowStore(MemoryKeyStore):
    """A memory store whose lookups hang until cancelled."""

    async def get(self, key_id: str) -> KeyRecord | None:
        await asyncio.Event().wait()
        return None  # pragma: no cover - never reached


async def test_a_verify_cancelled_during_a_slow_lookup_counts_as_no_failure() -> None:
    """A15: a verify cancelled while the store hangs (an outer deadline) counts as no failure."""
    svc = KeyService(SlowStore(), hasher=SpyHasher(), clock=FakeClock(1_800_000_000))
    _, key = await svc.create("k")
    for _ in range(30):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(svc.verify(key, client_ip=VICTIM_IP), 0.001)
    assert svc._throttle._counts == {} and svc._throttle._pending == {}
