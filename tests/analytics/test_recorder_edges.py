"""KeyActivity edges: configuration, records it ignores, pending bounds, the window, and what
happens when the activity store fails (a locked SQLite file, a killed Redis, a lost
compare-and-set race).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.analytics import KeyActivity
from extapi_kit.analytics.model import refusal_reason
from extapi_kit.analytics.recorder import MAX_PENDING_KEYS
from extapi_kit.analytics.store_memory import MemoryActivityStore
from extapi_kit.analytics.store_sqlite import SQLiteActivityStore
from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError
from extapi_kit.keys.service import KeyService
from extapi_kit.testing import FakeClock
from tests.analytics.support import record as _rec
from tests.keys.support import cheap_hasher
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

T0 = 1_796_000_000.0
DAY = 86400


async def _sqlite_store(path: Path, busy_timeout: float = 0.2) -> SQLiteActivityStore:
    """A SQLite activity store whose file and table exist (so a lock can be taken on it)."""
    store = SQLiteActivityStore(str(path), busy_timeout=busy_timeout)
    assert await store.save("setup", 0, "{}", ttl=60)
    return store


@contextlib.contextmanager
def _write_locked(path: Path) -> Iterator[None]:
    """Hold the SQLite write lock from another connection (another process would do the same)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _until(predicate: Any, seconds: float = 10.0) -> None:
    """Poll ``predicate`` (async, no arguments) until it is true; fail after ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_configuration_is_checked() -> None:
    """Out-of-range (or boolean) window, address and agent bounds and a non-positive flush
    interval are ConfigurationErrors (also ValueErrors) when the object is made."""
    bad: list[dict[str, Any]] = [
        {"window_days": 0},
        {"window_days": 91},
        {"window_days": "30"},
        {"window_days": True},
        {"max_ips": False},
        {"max_ips": 0},
        {"max_ips": 1001},
        {"max_agents": 0},
        {"max_agents": 2.5},
        {"flush_interval": 0},
        {"flush_interval": -1.0},
        {"flush_interval": float("nan")},
    ]
    for options in bad:
        with pytest.raises(ConfigurationError):
            KeyActivity("memory://", **options)
        with pytest.raises(ValueError):
            KeyActivity("memory://", **options)


async def test_the_sink_answers_what_it_can(tmp_path: Path) -> None:
    """As an audit sink it pings its store, prunes nothing by age (documents age out), refuses a
    record query with a StoreError (it keeps aggregates only), and its repr names the store."""
    act = KeyActivity(f"sqlite:///{tmp_path}/activity.db", window_days=7)
    try:
        assert repr(act) == f"KeyActivity(store={act.store!r}, window_days=7)"
        assert "SQLiteActivityStore" in repr(act)
        assert await act.ping() is True
        assert await act.prune(0.0) == 0
        with pytest.raises(StoreError, match="aggregates"):
            await act.query(key_id="k")
    finally:
        await act.aclose()


def test_refusal_reason_maps_known_slugs_and_refuses_malformed_ones() -> None:
    """A verify failure or problem slug maps to the reason it is counted under; an unknown but
    well-formed slug is counted as itself; a malformed one (case, spaces, length) is None."""
    assert refusal_reason("mismatch") == "invalid-secret"
    assert refusal_reason("quota-exceeded") == "rate-limited"
    assert refusal_reason("too-many-failed-attempts") == "throttled"
    assert refusal_reason("payment-required") == "payment-required"
    assert refusal_reason("a" * 48) == "a" * 48
    for slug in ("", "-leading", "Upper", "two words", "a" * 49, "x;drop", "ünï"):
        assert refusal_reason(slug) is None, slug


async def test_records_without_a_usable_key_are_ignored() -> None:
    """Records naming no key, or a refusal that is not a dict or lacks a string key id and
    reason, add nothing and create no document; a well-formed refusal counts for its key, with no
    address or agent (the caller is not the key's holder), and a record without a status counts
    its refusal but no status class."""
    act = KeyActivity("memory://", clock=FakeClock(T0))
    junk = [
        _rec(None, "192.0.2.1", T0, status=401),
        _rec(None, "192.0.2.1", T0, status=401, extra={"auth_refusal": "revoked"}),
        _rec(None, "192.0.2.1", T0, extra={"auth_refusal": {"key_id": "", "reason": "revoked"}}),
        _rec(None, "192.0.2.1", T0, extra={"auth_refusal": {"key_id": 7, "reason": "revoked"}}),
        _rec(None, "192.0.2.1", T0, extra={"auth_refusal": {"key_id": "k", "reason": None}}),
        _rec(None, "192.0.2.1", T0, extra={"auth_refusal": {"key_id": "k"}}),
    ]
    await act.write_batch(junk)
    assert act.pending_keys == 0
    await act.flush()
    store = act.store
    assert isinstance(store, MemoryActivityStore) and len(store) == 0
    refused = {"auth_refusal": {"key_id": "k", "reason": "revoked"}}
    await act.write_batch([_rec(None, "192.0.2.1", T0, status=401, agent="bot/1", extra=refused)])
    act.observe(_rec("k", "192.0.2.2", T0, status=0, rejection="insufficient-scope"))
    assert act.pending_keys == 1
    got = await act.get("k")
    assert got["refused"] == {"insufficient-scope": 1, "revoked": 1}
    assert got["requests"] == 1 and got["status"]["4xx"] == 1
    assert got["ips"] == [
        {
            "ip": "192.0.2.2",
            "count": 1,
            "first_seen": "2026-11-30T00:53:20Z",
            "last_seen": "2026-11-30T00:53:20Z",
        }
    ]
    assert got["user_agents"] == []
    await act.aclose()


async def test_pending_addresses_and_agents_are_bounded_between_flushes() -> None:
    """Between two flushes a key tracks at most 4 x max_ips addresses and 4 x max_agents agents:
    newcomers past that are not remembered (memory stays bounded), while ones already tracked
    keep counting and records without an address or agent still count as requests."""
    act = KeyActivity("memory://", max_ips=2, max_agents=2, clock=FakeClock(T0))
    for i in range(1, 11):
        act.observe(_rec("k", f"10.0.0.{i}", T0 + i, agent=f"sdk/{i}"))
    act.observe(_rec("k", "10.0.0.1", T0 + 20, agent="sdk/1"))
    act.observe(_rec("k", None, T0 + 21, agent=""))
    got = await act.get("k")
    assert got["requests"] == 12
    # Pending held .1-.8 (4 x max_ips); .9 and .10 came past the bound. Merged with max_ips=2,
    # the busy .1 and the newest tracked .8 stay; without the pending bound .10 would be shown.
    assert [(r["ip"], r["count"]) for r in got["ips"]] == [("10.0.0.1", 2), ("10.0.0.8", 1)]
    assert [(r["user_agent"], r["count"]) for r in got["user_agents"]] == [
        ("sdk/1", 2),
        ("sdk/8", 1),
    ]


async def test_records_older_than_the_window_never_count() -> None:
    """A record from before the window (a late audit spill) adds no day counter and shows no
    address; a document written once shows nothing after the window has passed over it."""
    clock = FakeClock(T0)
    act = KeyActivity("memory://", window_days=30, clock=clock)
    act.observe(_rec("old", "10.0.0.1", T0 - 40 * DAY))
    got = await act.get("old")
    assert got["requests"] == 0 and got["ips"] == [] and got["status"]["2xx"] == 0
    act.observe(_rec("k", "10.0.0.2", T0, status=404))
    assert (await act.get("k"))["status"]["4xx"] == 1
    clock.advance(31 * DAY)
    got = await act.get("k")
    assert got["requests"] == 0 and got["error_rate"] == 0.0 and got["ips"] == []


async def test_a_failed_flush_keeps_the_counts_and_merges_newer_ones(tmp_path: Path) -> None:
    """A flush that cannot write (another connection holds the SQLite write lock) raises
    StoreUnavailableError and keeps the key pending; records that arrived during the flush, even
    with an earlier timestamp (a long request recorded late), are merged in, and the next flush
    writes every count once with the earliest first-seen time."""
    path = tmp_path / "activity.db"
    store = await _sqlite_store(path)
    act = KeyActivity(store, clock=FakeClock(T0))
    act.observe(_rec("k", "10.0.0.1", T0 + 10, agent="sdk/1"))
    with _write_locked(path):
        flushing = asyncio.create_task(act.flush())
        for _ in range(100):  # until the flush has taken the pending counts and is writing
            if not act.pending_keys:
                break
            await asyncio.sleep(0)
        assert act.pending_keys == 0
        act.observe(_rec("k", "10.0.0.1", T0 + 5, status=500, agent="sdk/1"))
        with pytest.raises(StoreUnavailableError):
            await flushing
        assert act.pending_keys == 1
        assert await store.load("k") == (0, None)
    await act.flush()
    assert act.pending_keys == 0
    got = await act.get("k")
    assert got["requests"] == 2 and got["status"]["2xx"] == 1 and got["status"]["5xx"] == 1
    assert got["ips"] == [
        {
            "ip": "10.0.0.1",
            "count": 2,
            "first_seen": "2026-11-30T00:53:25Z",
            "last_seen": "2026-11-30T00:53:30Z",
        }
    ]
    assert got["user_agents"][0]["count"] == 2
    await act.aclose()
    assert await store.ping() is True  # a store passed in is left open
    await store.aclose()


async def test_a_failed_flush_never_grows_pending_past_its_bound(tmp_path: Path) -> None:
    """K19: when a flush fails while the pending table filled up to MAX_PENDING_KEYS with other
    keys, the failed key's counts are dropped (and counted in ``dropped``) rather than growing
    the table past its bound."""
    path = tmp_path / "activity.db"
    store = await _sqlite_store(path)
    act = KeyActivity(store, clock=FakeClock(T0))
    act.observe(_rec("k", "10.0.0.1", T0))
    with _write_locked(path):
        flushing = asyncio.create_task(act.flush())
        for _ in range(100):
            if not act.pending_keys:
                break
            await asyncio.sleep(0)
        assert act.pending_keys == 0
        for i in range(MAX_PENDING_KEYS):
            act.observe(_rec(f"other{i}", None, T0))
        assert act.pending_keys == MAX_PENDING_KEYS and act.dropped == 0
        with pytest.raises(StoreUnavailableError):
            await flushing
    assert act.pending_keys == MAX_PENDING_KEYS
    assert act.dropped == 1
    # Not closed: that would write the 10,000 pending documents, which this test does not need.
    await store.aclose()


async def test_close_with_an_unwritable_store_logs_the_loss_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing while the store cannot be written logs a warning naming how many keys' counts
    were lost, raises nothing, and leaves a store that was passed in open and usable."""
    path = tmp_path / "activity.db"
    store = await _sqlite_store(path)
    act = KeyActivity(store, clock=FakeClock(T0))
    act.observe(_rec("a", "10.0.0.1", T0))
    act.observe(_rec("b", "10.0.0.2", T0))
    with caplog.at_level(logging.WARNING, "extapi_kit.analytics"), _write_locked(path):
        await act.aclose()
    assert "last flush failed, 2 keys lost" in caplog.text
    assert await store.load("a") == (0, None)
    assert await store.save("a", 0, "{}", ttl=60)  # still open
    await act.aclose()  # a second close does nothing
    await store.aclose()


async def test_background_flush_retries_until_redis_is_back(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, the background flush logs a warning and retries on its own; once Redis is
    back the counts are written without any explicit flush, nothing lost."""
    act = KeyActivity(private_redis.url, flush_interval=0.05, clock=FakeClock(T0))
    private_redis.stop()
    with caplog.at_level(logging.WARNING, "extapi_kit.analytics"):
        await act.write_batch([_rec("k", "10.0.0.1", T0), _rec("k", "10.0.0.1", T0 + 1)])

        async def warned() -> bool:
            return "flush failed, will retry" in caplog.text

        await _until(warned)
    assert act.pending_keys == 1
    private_redis.start()

    async def written() -> bool:
        return act.pending_keys == 0 and (await act.store.load("k"))[1] is not None

    await _until(written)
    got = await act.get("k")
    assert got["requests"] == 2 and got["ips"][0]["count"] == 2
    await act.aclose()


class RacingStore(SQLiteActivityStore):
    """A SQLite store where another worker writes the same key between each read and write."""

    racing = True

    async def load(self, key_id: str) -> tuple[int, str | None]:
        version, doc = await super().load(key_id)
        if self.racing:
            other = {"days": {"2026-11-30": {"2xx": 1}}, "ips": {}, "agents": {}}
            assert await super().save(key_id, version, json.dumps(other), ttl=60)
        return version, doc


async def test_losing_every_compare_and_set_race_is_a_retryable_store_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When another writer wins every compare-and-set, the flush gives up with a StoreError
    (never overwriting the other's document) and keeps the counts; a read still answers with the
    stored document (logging the failed flush), and once the race ends the counts are added to
    the other writer's, none lost."""
    store = RacingStore(str(tmp_path / "activity.db"), busy_timeout=1.0)
    act = KeyActivity(store, clock=FakeClock(T0))
    act.observe(_rec("k", "10.0.0.1", T0))
    with pytest.raises(StoreError, match="too many concurrent writers"):
        await act.flush()
    assert act.pending_keys == 1
    with caplog.at_level(logging.WARNING, "extapi_kit.analytics"):
        got = await act.get("k")
    assert "flush before a read failed" in caplog.text
    assert got["requests"] == 1 and got["ips"] == []  # the other writer's document only
    store.racing = False
    await act.flush()
    got = await act.get("k")
    assert got["requests"] == 2 and [r["ip"] for r in got["ips"]] == ["10.0.0.1"]
    await act.aclose()
    await store.aclose()


async def test_unreadable_documents_are_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored document that is not JSON (logged) or not a JSON object reads as no activity and
    is replaced by a valid document on the key's next use."""
    store = await _sqlite_store(tmp_path / "activity.db")
    assert await store.save("garbled", 0, "{not json", ttl=60)
    assert await store.save("listed", 0, "[1, 2]", ttl=60)
    act = KeyActivity(store, clock=FakeClock(T0))
    with caplog.at_level(logging.WARNING, "extapi_kit.analytics"):
        for key_id in ("garbled", "listed"):
            got = await act.get(key_id)
            assert got["requests"] == 0 and got["ips"] == []
    assert caplog.text.count("unreadable document replaced") == 1
    for key_id in ("garbled", "listed"):
        act.observe(_rec(key_id, "10.0.0.1", T0))
    await act.flush()
    for key_id in ("garbled", "listed"):
        _, raw = await store.load(key_id)
        assert raw is not None and isinstance(json.loads(raw), dict)
        assert (await act.get(key_id))["requests"] == 1
    await act.aclose()
    await store.aclose()


async def test_a_failing_new_ip_callback_is_logged_and_loses_no_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """K21: an ``api_key.new_ip`` callback that raises is logged with the key id; the flush still
    succeeds, the counts are written, and the next new address is announced again."""
    keys = KeyService("memory://", hasher=cheap_hasher())
    record, _ = await keys.create("watched", owner="acme", metadata={"notify_new_ip": True})
    calls: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        calls.append(data["ip"])
        if len(calls) == 1:
            raise RuntimeError("webhook outbox full")

    act = KeyActivity("memory://", keys=keys, on_event=on_event, clock=FakeClock(T0))
    with caplog.at_level(logging.ERROR, "extapi_kit.analytics"):
        act.observe(_rec(record.id, "198.51.100.1", T0))
        await act.flush()
    assert f"api_key.new_ip event for key {record.id} failed" in caplog.text
    assert "webhook outbox full" in caplog.text
    act.observe(_rec(record.id, "198.51.100.2", T0 + 1))
    await act.flush()
    assert calls == ["198.51.100.1", "198.51.100.2"]
    assert (await act.get(record.id))["requests"] == 2
    await act.aclose()
    await keys.aclose()


async def test_idle_documents_are_pruned_by_the_wall_clock_the_stores_stamp(
    tmp_path: Path,
) -> None:
    """The stores stamp each write with the wall clock, so pruning goes by it too: a recorder whose
    injected clock runs 40 days ahead keeps what it just wrote, while a document last written 40
    (real) days ago is pruned at the day's first flush."""
    path = tmp_path / "activity.db"
    store = await _sqlite_store(path)
    assert await store.save("quiet", 0, "{}", ttl=60)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "UPDATE extapi_activity_docs SET updated_at = ? WHERE key_id = 'quiet'",
            (time.time() - 40 * DAY,),
        )
    finally:
        conn.close()
    ahead = time.time() + 40 * DAY
    act = KeyActivity(store, clock=FakeClock(ahead))
    act.observe(_rec("busy", "10.0.0.1", ahead))
    await act.flush()
    assert (await act.get("busy"))["requests"] == 1
    assert (await store.load("busy"))[0] == 1
    assert await store.load("quiet") == (0, None)
    await store.aclose()
