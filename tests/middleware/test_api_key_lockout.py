"""ApiKeyMiddleware with two client IPs: a known key id is not a lockout handle (A16)."""

from __future__ import annotations

import httpx
import pytest

from extapi_kit._types import ASGIApp
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.testing import FakeClock
from tests.keys.support import RecordingApp, SpyHasher, forge

pytestmark = pytest.mark.anyio


def _client(app: ASGIApp, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_wrong_secrets_from_another_ip_never_429_the_key_holder() -> None:
    """A16: 21+ wrong secrets for the victim's key id from another IP, then ~20 a minute, leave
    the victim's correct requests at 200 after its cache entry expires; the attacker gets 429."""
    clock = FakeClock(1_800_000_000)
    spy = SpyHasher()
    service = KeyService(MemoryKeyStore(), hasher=spy, clock=clock, cache_ttl=10)
    mw = ApiKeyMiddleware(RecordingApp(), store=service)
    rec, key = await service.create("victim")
    wrong = forge(rec.display_prefix)
    async with _client(mw, "198.51.100.10") as victim, _client(mw, "203.0.113.66") as attacker:
        assert (await victim.get("/", headers={"X-API-Key": key})).status_code == 200
        flood = [
            (await attacker.get("/", headers={"X-API-Key": wrong})).status_code for _ in range(21)
        ]
        assert flood == [401] * 20 + [429]
        clock.advance(11)  # the victim's positive cache entry has expired
        assert (await victim.get("/", headers={"X-API-Key": key})).status_code == 200
        for _ in range(3):  # keep it up: ~20 wrong secrets a minute for three minutes
            clock.advance(50)
            for _ in range(20):
                await attacker.get("/", headers={"X-API-Key": wrong})
            clock.advance(11)
            r = await victim.get("/", headers={"X-API-Key": key})
            assert r.status_code == 200, r.text
        clock.advance(11)  # past the cache TTL again (a cached key skips the throttle)
        still = await attacker.get("/", headers={"X-API-Key": key})
        assert still.status_code == 429  # the failing source is throttled, even with the key
    assert spy.verify_calls <= 4 * 20 + 5
    await service.aclose()
