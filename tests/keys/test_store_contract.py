"""The KeyStore contract, run against every built-in backend (memory, sqlite, redis, postgresql)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError
from extapi_kit.keys.format import generate_key_id
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import KeyStore
from extapi_kit.stores import store_from_url

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0


def make(**over: object) -> KeyRecord:
    key_id = generate_key_id()
    base = KeyRecord(
        id=key_id,
        display_prefix=f"xk_live_{key_id}",
        env="live",
        name="n",
        hash="$argon2id$fake",
        created_at=NOW,
        updated_at=NOW,
        scopes=("read",),
        grants={"projects": ("7", "9")},
        rate_limits={"read": "500/minute"},
        allowed_cidrs=("10.0.0.0/8",),
        quota={"monthly": 1000},
        metadata={"team": "a"},
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[KeyStore]:
    s: KeyStore = store_from_url("keys", any_contract_store_url)
    try:
        yield s
    finally:
        await s.aclose()


async def test_create_get_round_trip(store: KeyStore) -> None:
    """A created record comes back equal, field for field."""
    rec = make(expires_at=NOW + 60)
    await store.create(rec)
    assert await store.get(rec.id) == rec
    assert await store.get(generate_key_id()) is None
    assert await store.ping()


async def test_create_twice_conflicts(store: KeyStore) -> None:
    """Creating an existing id raises ConflictError."""
    rec = make()
    await store.create(rec)
    with pytest.raises(ConflictError):
        await store.create(rec)


async def test_update_replaces_but_keeps_last_used(store: KeyStore) -> None:
    """update() replaces the record but never moves last_used_at (only touch does)."""
    rec = make()
    await store.create(rec)
    await store.touch(rec.id, NOW + 5)
    changed = dataclasses.replace(rec, name="new", revoked_at=NOW + 6, last_used_at=None)
    await store.update(changed)
    got = await store.get(rec.id)
    assert got is not None
    assert got.name == "new" and got.revoked_at == NOW + 6 and got.last_used_at == NOW + 5
    with pytest.raises(NotFoundError):
        await store.update(make())


async def test_touch_only_moves_forward(store: KeyStore) -> None:
    """touch() sets last_used_at, never backwards, and ignores unknown ids."""
    rec = make()
    await store.create(rec)
    await store.touch(rec.id, NOW + 10)
    await store.touch(rec.id, NOW + 3)
    got = await store.get(rec.id)
    assert got is not None and got.last_used_at == NOW + 10
    await store.touch(generate_key_id(), NOW)


async def test_list_pages_and_filters(store: KeyStore) -> None:
    """list() pages by cursor without gaps or repeats and filters by owner, env and status."""
    records = [make(owner="a" if i % 2 else "b", env="live" if i < 5 else "test") for i in range(7)]
    records.append(make(owner="a", revoked_at=NOW - 1))
    for r in records:
        await store.create(r)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list(limit=3, cursor=cursor, now=NOW)
        assert len(page) <= 3
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == sorted(r.id for r in records)
    owned, _ = await store.list(owner="a", now=NOW)
    assert {r.id for r in owned} == {r.id for r in records if r.owner == "a"}
    tests, _ = await store.list(env="test", now=NOW)
    assert {r.id for r in tests} == {r.id for r in records if r.env == "test"}
    revoked, _ = await store.list(status="revoked", now=NOW)
    assert [r.id for r in revoked] == [records[-1].id]
    active, nxt = await store.list(status="active", owner="a", limit=2, now=NOW)
    assert len(active) == 2 and nxt is not None
    with pytest.raises(ConfigurationError):
        await store.list(status="bogus")
    with pytest.raises(ConfigurationError):
        await store.list(limit=0)


async def test_watch_reports_updates(store: KeyStore) -> None:
    """A watcher registered on the store hears about updates made through it."""
    seen: list[str] = []
    watch = getattr(store, "watch")  # noqa: B009 - optional protocol member
    await watch(seen.append)
    rec = make()
    await store.create(rec)
    await store.update(dataclasses.replace(rec, name="x"))
    assert rec.id in seen


async def test_repr_shows_no_hash(store: KeyStore) -> None:
    """Store and record reprs never contain the stored hash (A10)."""
    rec = make(hash="$argon2id$SENTINELHASH")
    await store.create(rec)
    assert "SENTINELHASH" not in repr(store)
    assert "SENTINELHASH" not in repr(await store.get(rec.id))
