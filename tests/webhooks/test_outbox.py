"""The transactional outbox (publish inside the app's SQLite transaction) and invariant G3."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.webhooks import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    Event,
    WebhookDispatcher,
    WebhookManager,
    publish_in_transaction,
    webhook_store_from_url,
)
from extapi_kit.webhooks.store_sqlite import SQLiteWebhookStore
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


def _app_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, state TEXT)")
    return conn


async def test_commit_delivers_and_rollback_never_does(tmp_path: Path) -> None:
    """An event written in a committed transaction is delivered; a rolled-back one never is."""
    db = tmp_path / "app.db"
    store = webhook_store_from_url(f"sqlite:///{db}")
    recorder = Recorder()
    async with serve(recorder) as base:
        await WebhookManager(store, allow_loopback=True).add_endpoint(base + "/h")
        conn = _app_db(db)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO jobs (state) VALUES ('done')")
        kept = publish_in_transaction(conn, "job.completed", {"job": 1})
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO jobs (state) VALUES ('done')")
        lost = publish_in_transaction(conn, "job.completed", {"job": 2})
        conn.execute("ROLLBACK")
        conn.close()
        async with WebhookDispatcher(store, allow_loopback=True):
            await recorder.wait_for(1)
            await asyncio.sleep(0.3)  # a wrongly kept second event would arrive by now
    assert len(recorder.requests) == 1 and kept.id.encode() in recorder.requests[0].body
    assert [e.id for e in await store.list_events()] == [kept.id]
    assert lost.id != kept.id
    await store.aclose()


async def test_publish_in_transaction_creates_tables_and_is_idempotent(tmp_path: Path) -> None:
    """The first use creates the outbox tables; the same event id twice yields one delivery."""
    conn = _app_db(tmp_path / "fresh.db")
    with pytest.raises(ConfigurationError):
        publish_in_transaction(conn, "t", {})  # no open transaction
    conn.execute("BEGIN")
    publish_in_transaction(conn, "t", {"a": 1}, event_id="evt_fixed")
    publish_in_transaction(conn, "t", {"a": 1}, event_id="evt_fixed")
    conn.execute("COMMIT")
    conn.close()
    store = webhook_store_from_url(f"sqlite:///{tmp_path}/fresh.db")
    assert [e.id for e in await store.list_events()] == ["evt_fixed"]
    assert await store.list_deliveries() == []  # no endpoint yet: stored for replay only
    await store.aclose()


async def test_dispatcher_publish_is_idempotent_and_validates(tmp_path: Path) -> None:
    """Publishing with a known event id returns the stored event; bad input is refused."""
    store = webhook_store_from_url(f"sqlite:///{tmp_path}/x.db")
    dispatcher = WebhookDispatcher(store)
    first = await dispatcher.publish("t", {"v": 1}, event_id="evt_1")
    again = await dispatcher.publish("t", {"v": 2}, event_id="evt_1")
    assert again == first
    with pytest.raises(ConfigurationError):
        await dispatcher.publish("", {})
    with pytest.raises(ConfigurationError):
        await dispatcher.publish("t", [1, 2])  # type: ignore[arg-type]
    await store.aclose()


# -- G3: stateful outbox invariant -------------------------------------------------------------

T0 = 1_900_000_000.0
LEASE = 30.0
WORKERS = ("a", "b", "c")


class OutboxMachine(RuleBasedStateMachine):
    """Enqueue, claim, ack, fail, crash (lease expiry) and time: every event is delivered >= 1."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.store = SQLiteWebhookStore(f"{self.dir.name}/g3.db")
        self.now = T0
        self.endpoint = Endpoint(
            url="https://example.com/h",
            secrets=[EndpointSecret(value="whsec_" + "A" * 32, created_at=T0)],
        )
        self.run(self.store.add_endpoint(self.endpoint))
        self.published: set[str] = set()
        self.delivered: set[str] = set()
        self.held: dict[str, list[Delivery]] = {w: [] for w in WORKERS}

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    @rule()
    def enqueue(self) -> None:
        ev = Event(type="t", timestamp=self.now)
        d = Delivery(
            event_id=ev.id, endpoint_id=self.endpoint.id, next_attempt_at=self.now,
            created_at=self.now,
        )  # fmt: skip
        self.run(self.store.publish(ev, [d]))
        self.published.add(ev.id)

    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4))
    def claim(self, worker: str, n: int) -> None:
        claimed = self.run(
            self.store.claim(owner=worker, now=self.now, lease_seconds=LEASE, limit=n)
        )
        for d, _ in claimed:  # type: ignore[attr-defined]
            for other, held in self.held.items():
                for h in held:
                    # Never handed out while another worker's lease on it is still valid.
                    assert not (h.id == d.id and (h.lease_until or 0) > self.now), other
            self.held[worker].append(d)

    @rule(worker=st.sampled_from(WORKERS))
    def ack(self, worker: str) -> None:
        if self.held[worker]:
            d = self.held[worker].pop(0)
            self.delivered.add(d.event_id)  # the receiver got it, whatever happens next
            att = Attempt(delivery_id=d.id, time=self.now, duration=0.01, status=200)
            self.run(self.store.finish(d, att, owner=worker, status=DeliveryStatus.SUCCEEDED))

    @rule(worker=st.sampled_from(WORKERS), delay=st.sampled_from([0.0, 5.0, 60.0]))
    def fail(self, worker: str, delay: float) -> None:
        if self.held[worker]:
            d = self.held[worker].pop(0)
            att = Attempt(delivery_id=d.id, time=self.now, duration=0.01, status=500)
            self.run(self.store.finish(d, att, owner=worker, status=DeliveryStatus.PENDING,
                                       next_attempt_at=self.now + delay))  # fmt: skip

    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker: str) -> None:
        self.held[worker] = []  # leases are simply abandoned

    @rule(seconds=st.sampled_from([1.0, 10.0, 31.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def nothing_delivered_that_was_not_published(self) -> None:
        assert self.delivered <= self.published

    def teardown(self) -> None:
        try:
            # Recovery: time passes, every lease expires, a fresh worker drains the outbox.
            for _ in range(len(self.published) + 5):
                self.now += LEASE + 61
                claimed = self.run(
                    self.store.claim(owner="z", now=self.now, lease_seconds=LEASE, limit=50)
                )
                if not claimed:
                    break
                for d, _ in claimed:  # type: ignore[attr-defined]
                    self.delivered.add(d.event_id)
                    att = Attempt(delivery_id=d.id, time=self.now, duration=0.01, status=200)
                    self.run(self.store.finish(d, att, owner="z", status=DeliveryStatus.SUCCEEDED))
            assert self.delivered == self.published
            left = self.run(self.store.list_deliveries(limit=10_000))
            assert all(d.status == DeliveryStatus.SUCCEEDED for d in left)  # type: ignore[attr-defined]
        finally:
            self.run(self.store.aclose())
            self.loop.close()
            self.dir.cleanup()


def test_outbox_state_machine() -> None:
    """G3: under claims, acks, failures, crashes and time every event is delivered at least once."""
    run_state_machine_as_test(
        OutboxMachine, settings=settings(max_examples=40, stateful_step_count=30, deadline=None)
    )
