"""KeyService: lifecycle (create, update, rotate, revoke, expiry) and the verify path."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from extapi_kit.exceptions import (
    ConfigurationError,
    ConflictError,
    InvalidKeyError,
    NotFoundError,
)
from extapi_kit.keys.format import generate_key
from extapi_kit.keys.hashing import Argon2Hasher, HmacHasher
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.service import KeyService, KeyThrottledError
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.testing import FakeClock
from tests.keys.support import SpyHasher, forge

pytestmark = pytest.mark.anyio


class CountingStore(MemoryKeyStore):
    """A memory store counting lookups and last-used writes."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.touches: list[tuple[str, float]] = []

    async def get(self, key_id: str) -> KeyRecord | None:
        self.gets += 1
        return await super().get(key_id)

    async def touch(self, key_id: str, when: float) -> None:
        self.touches.append((key_id, when))
        await super().touch(key_id, when)


def make_service(**kw: Any) -> tuple[KeyService, CountingStore, SpyHasher, FakeClock]:
    store = CountingStore()
    spy = SpyHasher()
    clock = FakeClock(1_800_000_000)
    kw.setdefault("hasher", spy)
    return KeyService(store, clock=clock, **kw), store, spy, clock


async def test_create_shows_secret_once_and_verify_returns_principal() -> None:
    """create() returns the key once; the record holds only a hash; verify() gives the principal."""
    svc, _, _, _ = make_service()
    rec, key = await svc.create(
        "ci",
        env="test",
        owner="team-a",
        scopes="read,write",
        grants={"projects": ["7", "9"]},
        rate_limits={"read": "500/minute"},
        allowed_cidrs=["10.0.0.0/8"],
        metadata={"k": 1},
    )
    assert key.startswith(f"xk_test_{rec.id}_")
    assert key[len(rec.display_prefix) + 1 :] not in rec.hash
    p = await svc.verify(key, client_ip="10.1.2.3")
    assert p.key_id == rec.id and p.owner == "team-a" and p.env == "test"
    assert p.scopes == frozenset({"read", "write"})
    assert p.grants == {"projects": frozenset({"7", "9"})}
    assert p.rate_limits == {"read": "500/minute"} and p.allowed_cidrs == ("10.0.0.0/8",)
    assert p.prefix == rec.display_prefix
    assert (await svc.get(rec.id)).name == "ci"
    with pytest.raises(NotFoundError):
        await svc.get("nope")


async def test_all_failures_look_the_same_and_unknown_ids_cost_no_hash() -> None:
    """Unknown, revoked, expired and wrong-secret keys raise the same error (A2)."""
    svc, _, spy, clock = make_service()
    live_rec, _ = await svc.create("live")
    rev, revoked = await svc.create("rev")
    await svc.revoke(rev.id)
    _, expiring = await svc.create("exp", expires_in="1h")
    clock.advance(3601)
    wrong = forge(live_rec.display_prefix)
    unknown = generate_key()
    messages = []
    before = spy.verify_calls
    with pytest.raises(InvalidKeyError) as info:
        await svc.verify(unknown)
    messages.append(str(info.value))
    assert spy.verify_calls == before  # 128-bit ids: unknown ids are not hashed
    for key in (revoked, expiring, wrong):
        with pytest.raises(InvalidKeyError) as info:
            await svc.verify(key)
        messages.append(str(info.value))
        assert not isinstance(info.value, KeyThrottledError)
    assert len(set(messages)) == 1


@pytest.mark.parametrize(
    "bad",
    ["x" * 10_240, "xk_live_\x00", "zz_live_AAAA", "", "é" * 10, "xk__live"],
)
async def test_malformed_keys_touch_neither_store_nor_hasher(bad: str) -> None:
    """Malformed keys are refused with zero store lookups and zero hash calls (A3)."""
    svc, store, spy, _ = make_service()
    _, key = await svc.create("k")
    for candidate in (bad, key[:-1] + ("a" if key[-1] != "a" else "b")):
        with pytest.raises(InvalidKeyError):
            await svc.verify(candidate)
    assert store.gets == 0 and spy.verify_calls == 0


async def test_failed_attempt_throttle_stops_hash_work_but_not_cached_keys() -> None:
    """Past the per-IP limit, well-formed keys get 429 before any lookup; cached keys work (A4)."""
    svc, store, spy, clock = make_service(failures_per_ip=5, failures_per_key=100)
    _, good = await svc.create("good")
    await svc.verify(good, client_ip="203.0.113.7")
    for _ in range(5):
        with pytest.raises(InvalidKeyError):
            await svc.verify(generate_key(), client_ip="203.0.113.7")
    gets = store.gets
    with pytest.raises(KeyThrottledError) as info:
        await svc.verify(generate_key(), client_ip="203.0.113.7")
    assert 0 < info.value.retry_after <= 60 and store.gets == gets
    assert (await svc.verify(good, client_ip="203.0.113.7")).name == "good"
    other = await svc.verify(good, client_ip="198.51.100.1")
    assert other.name == "good"
    clock.advance(61)
    with pytest.raises(InvalidKeyError) as after:
        await svc.verify(generate_key(), client_ip="203.0.113.7")
    assert not isinstance(after.value, KeyThrottledError)
    assert spy.verify_calls == 1


async def test_wrong_secrets_for_one_key_id_are_throttled_per_source() -> None:
    """Wrong secrets for a real key id stop costing hashes after the per-(IP, key id) limit (A4);
    the holder on another IP is still verified (A16)."""
    svc, _, spy, _ = make_service(failures_per_ip=1000, failures_per_key=3)
    rec, key = await svc.create("target")
    for _ in range(3):
        with pytest.raises(InvalidKeyError):
            await svc.verify(forge(rec.display_prefix), client_ip="198.51.100.1")
    calls = spy.verify_calls
    with pytest.raises(KeyThrottledError):
        await svc.verify(forge(rec.display_prefix), client_ip="198.51.100.1")
    assert spy.verify_calls == calls == 3
    assert (await svc.verify(key, client_ip="198.51.100.99")).key_id == rec.id


async def test_revoke_is_immediate_in_process_even_when_cached() -> None:
    """A revoked key that sits in the positive cache is refused at once in this process."""
    svc, _, _, _ = make_service()
    rec, key = await svc.create("k")
    await svc.verify(key)
    events: list[str] = []
    svc._on_event = lambda e, r: events.append(e)
    assert (await svc.revoke(rec.id)).revoked_at is not None
    assert (await svc.revoke(rec.id)).revoked_at is not None  # idempotent
    with pytest.raises(InvalidKeyError):
        await svc.verify(key)
    assert events == ["api_key.revoked"]


async def test_expiry_bounds_the_cache() -> None:
    """A cached key stops working at its expiry, not at the end of the cache TTL."""
    svc, _, _, clock = make_service(cache_ttl=3600)
    _, key = await svc.create("k", expires_in=30)
    await svc.verify(key)
    clock.advance(29)
    await svc.verify(key)
    clock.advance(2)
    with pytest.raises(InvalidKeyError):
        await svc.verify(key)


async def test_rotation_grace_period() -> None:
    """Old and new keys both work inside the grace; the old fails after it (A7)."""
    events: list[tuple[str, KeyRecord]] = []

    async def on_event(event: str, record: KeyRecord) -> None:
        events.append((event, record))

    svc, _, _, clock = make_service(on_event=on_event)
    old, old_key = await svc.create("k", scopes=["read"], owner="o", expires_in="30d")
    await svc.verify(old_key)
    new, new_key = await svc.rotate(old.id, grace="1h")
    assert new.id != old.id and new_key != old_key and old_key not in repr(new)
    assert (new.scopes, new.owner, new.expires_at, new.rotated_from) == (
        old.scopes,
        old.owner,
        old.expires_at,
        old.id,
    )
    assert (await svc.verify(old_key)).key_id == old.id
    assert (await svc.verify(new_key)).key_id == new.id
    assert (await svc.get(old.id)).status(clock()) == "rotating"
    with pytest.raises(ConflictError):
        await svc.rotate(old.id)
    clock.advance(3601)
    with pytest.raises(InvalidKeyError):
        await svc.verify(old_key)
    assert (await svc.verify(new_key)).key_id == new.id
    assert [e for e, _ in events] == ["api_key.created", "api_key.rotated"]
    assert events[1][1].id == new.id


async def test_rotation_grace_never_outlives_expiry() -> None:
    """The grace of a rotated key ends at the key's own expiry if that is sooner (A7)."""
    svc, _, _, clock = make_service()
    old, old_key = await svc.create("k", expires_in=60)
    await svc.rotate(old.id, grace="24h")
    assert (await svc.get(old.id)).rotation_expires_at == old.expires_at
    clock.advance(61)
    with pytest.raises(InvalidKeyError):
        await svc.verify(old_key)
    with pytest.raises(ConflictError):
        await svc.rotate(old.id)


async def test_update_changes_settings_and_drops_cache() -> None:
    """update() validates and applies changes; the next verify sees them."""
    svc, _, _, _ = make_service()
    rec, key = await svc.create("k", scopes=["read"])
    assert (await svc.verify(key)).scopes == frozenset({"read"})
    updated = await svc.update(
        rec.id,
        name="renamed",
        scopes=["read", "write"],
        rate_limits={"write": "10/second"},
        allowed_cidrs="192.0.2.0/24",
        owner=None,
        description="d",
        grants={"projects": "*"},
        metadata={"a": 1},
        quota={"monthly": 5},
        expires_at=None,
    )
    assert updated.name == "renamed" and updated.rate_limits == {"write": "10/second"}
    p = await svc.verify(key)
    assert p.scopes == frozenset({"read", "write"}) and p.allowed_cidrs == ("192.0.2.0/24",)
    assert p.grants == {"projects": frozenset({"*"})}
    for bad in (
        {"scopes": ["has space"]},
        {"rate_limits": {"read": "lots"}},
        {"allowed_cidrs": ["10.0.0.300/8"]},
        {"name": ""},
        {"metadata": {"x": object()}},
    ):
        with pytest.raises(ConfigurationError):
            await svc.update(rec.id, **bad)


async def test_last_used_writes_are_throttled() -> None:
    """last_used_at is written at most once per interval per key, off the request path."""
    svc, store, _, clock = make_service(last_used_interval=60)
    rec, key = await svc.create("k")
    for _ in range(5):
        await svc.verify(key)
    await svc.flush()
    assert len(store.touches) == 1
    clock.advance(61)
    await svc.verify(key)
    await svc.flush()
    assert [t for _, t in store.touches] == [clock() - 61, clock()]
    assert (await svc.get(rec.id)).last_used_at == clock()


async def test_rehash_on_parameter_change() -> None:
    """A key hashed with other parameters or HMAC is rehashed on its next successful verify."""
    store = MemoryKeyStore()
    pepper = HmacHasher(b"p" * 32)
    old_svc = KeyService(store, hasher=pepper)
    rec, key = await old_svc.create("k")
    assert rec.hash.startswith("hmac-sha256$1$")
    new_svc = KeyService(store, hasher=SpyHasher(), extra_hashers=[pepper])
    await new_svc.verify(key)
    stored = await store.get(rec.id)
    assert stored is not None and stored.hash.startswith("$argon2id$")
    fresh = KeyService(store, hasher=SpyHasher())
    assert (await fresh.verify(key)).key_id == rec.id


async def test_on_event_errors_do_not_break_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    """A failing on_event callback is logged, and the operation still succeeds."""

    def boom(event: str, record: KeyRecord) -> None:
        raise RuntimeError("boom")

    svc, _, _, _ = make_service(on_event=boom)
    rec, _ = await svc.create("k")
    assert (await svc.update(rec.id, name="x")).name == "x"
    assert "on_event callback failed" in caplog.text


async def test_config_errors() -> None:
    """Bad service arguments and create arguments raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        KeyService(MemoryKeyStore(), prefix="Bad_")
    with pytest.raises(ConfigurationError):
        KeyService(MemoryKeyStore(), cache_ttl=-1)
    with pytest.raises(ConfigurationError):
        KeyService(None)  # type: ignore[arg-type]
    svc, _, _, _ = make_service()
    with pytest.raises(ConfigurationError):
        await svc.create("k", expires_at=1.0, expires_in=5)
    with pytest.raises(ConfigurationError):
        await svc.create("k", env="LIVE")
    with pytest.raises(ConfigurationError):
        await svc.create("k", grants={"bad type": ["1"]})
    with pytest.raises(ConfigurationError):
        await svc.list(status="nope")


async def test_list_through_service() -> None:
    """list() filters by status using the service clock."""
    svc, _, _, _ = make_service()
    a, _ = await svc.create("a", owner="o")
    b, _ = await svc.create("b", owner="o")
    await svc.revoke(b.id)
    active, _ = await svc.list(owner="o", status="active")
    assert [r.id for r in active] == [a.id]
    public = dataclasses.asdict(a)
    assert "hash" in public and "hash" not in a.public_dict(0)


async def test_default_hasher_is_argon2() -> None:
    """Without a hasher the service uses argon2id at the OWASP minimum."""
    svc = KeyService("memory://")
    assert isinstance(svc.hasher, Argon2Hasher)
    assert "m=19456" in repr(svc)
    await svc.aclose()


async def test_concurrent_verifies_of_one_key_share_one_hash() -> None:
    """Concurrent cold verifies of the same key run one lookup and one hash (single flight)."""
    import asyncio

    svc, store, spy, _ = make_service()
    rec, key = await svc.create("k")
    principals = await asyncio.gather(*(svc.verify(key) for _ in range(10)))
    assert {p.key_id for p in principals} == {rec.id}
    assert spy.verify_calls == 1 and store.gets == 1
    results = await asyncio.gather(
        *(svc.verify(forge(rec.display_prefix)) for _ in range(3)), return_exceptions=True
    )
    assert all(type(r) is InvalidKeyError for r in results)


async def test_successful_verifies_do_not_use_up_the_throttle() -> None:
    """Attempts counted in advance are refunded on success: busy valid keys are never throttled."""
    svc, _, _, _ = make_service(failures_per_ip=2, failures_per_key=2, cache_ttl=0)
    _, key = await svc.create("k")
    for _ in range(10):
        assert (await svc.verify(key, client_ip="192.0.2.1")).name == "k"
