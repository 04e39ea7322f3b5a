"""Usage edges: failed SQLite batches retried once, atomic quota charges, sync callers, hooks."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.testing import FakeClock
from extapi_kit.usage import EVENT_WARNING, UsageTracker
from extapi_kit.usage.store import Counts, QuotaCheck
from extapi_kit.usage.store_sqlite import SQLiteUsageStore
from tests.usage.support import MID_NOVEMBER

pytestmark = pytest.mark.anyio

DAY = "2026-11-15"


def test_sqlite_usage_store_refuses_unsafe_table_prefix(tmp_path: Path) -> None:
    """The table prefix is spliced into SQL, so anything but a plain name is refused."""
    with pytest.raises(ConfigurationError, match="invalid table prefix"):
        SQLiteUsageStore(str(tmp_path / "u.db"), table_prefix="x; DROP TABLE keys")
    assert (
        repr(SQLiteUsageStore(str(tmp_path / "u.db")))
        == f"SQLiteUsageStore({str(tmp_path / 'u.db')!r})"
    )


async def test_batch_failing_mid_transaction_is_applied_once_on_retry(tmp_path: Path) -> None:
    """A batch whose write failed is rolled back whole (id not kept), so its retry counts once."""
    path = str(tmp_path / "u.db")
    store = SQLiteUsageStore(path)
    counts: Counts = {("k:k1", DAY, "c:read"): 3}
    await store.add({}, ttl=60, batch="empty")  # nothing to write: a no-op
    await store.add(counts, ttl=60, batch="b1")
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TABLE extapi_usage_days")
    with pytest.raises(StoreError):
        await store.add(counts, ttl=60, batch="b2")
    other = SQLiteUsageStore(path)  # recreates the missing table
    assert (await other.days("k:k1", [DAY]))[DAY] == {}
    await store.add(counts, ttl=60, batch="b2")
    await store.add(counts, ttl=60, batch="b2")  # a duplicate re-send is skipped
    assert (await store.days("k:k1", [DAY]))[DAY] == {"c:read": 3}
    await other.aclose()
    await store.aclose()


async def test_days_query_returns_only_the_requested_days(tmp_path: Path) -> None:
    """Asking for two non-adjacent days returns exactly those; no days asked, no query."""
    store = SQLiteUsageStore(str(tmp_path / "u.db"))
    await store.add(
        {
            ("k:k1", d, "c:read"): i + 1
            for i, d in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"])
        },
        ttl=60,
    )
    got = await store.days("k:k1", ["2026-11-03", "2026-11-01"])
    assert got == {"2026-11-03": {"c:read": 3}, "2026-11-01": {"c:read": 1}}
    assert await store.days("k:k1", []) == {}
    await store.aclose()


async def test_failed_quota_charge_changes_nothing(tmp_path: Path) -> None:
    """A charge that fails inside its transaction is rolled back: no counter moves."""
    path = str(tmp_path / "u.db")
    store = SQLiteUsageStore(path)
    checks = [QuotaCheck("k:k1:m:2026-11", 10, 60), QuotaCheck("o:acme:m:2026-11", 10, 60)]
    assert await store.consume(checks, 2) == (True, [2, 2])
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TRIGGER no_acme BEFORE UPDATE ON extapi_usage_quota "
            "WHEN NEW.counter LIKE 'o:%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(StoreError):
        await store.consume(checks, 1)
    assert await store.quota_used("k:k1:m:2026-11") == 2
    await store.aclose()


def test_sync_caller_counts_wait_for_an_explicit_flush() -> None:
    """record() from code without an event loop keeps the counts pending (no flusher task)."""
    tracker = UsageTracker("memory://", clock=FakeClock(MID_NOVEMBER))
    tracker.record("k1", "acme", DAY, "read", "served")
    tracker.record("k1", "acme", DAY, "read", "served")
    assert tracker.idle
    assert tracker.pending == {("k1", "acme", DAY, "read", "served"): 2}
    assert tracker.owner_rules("acme") == ()  # no owner quotas configured


async def test_failing_notification_hook_is_retried_on_the_next_charge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hook that raises is logged, and the threshold is not marked settled in this process."""
    clock = FakeClock(MID_NOVEMBER)
    calls: list[str] = []

    def hook(kind: str, data: dict[str, Any]) -> None:
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("webhook down")

    tracker = UsageTracker("memory://", on_event=hook, clock=clock)
    plan = tracker.quota_plan(clock(), "k1", {"monthly": 10}, None)
    assert plan is not None
    with caplog.at_level(logging.ERROR, logger="extapi_kit.usage"):
        for _ in range(8):
            await tracker.charge(plan, 1, clock(), "k1", None)
        await tracker.flush()
    assert calls == [EVENT_WARNING] and "notification" in caplog.text
    assert not tracker._fired
    await tracker.aclose()
    await tracker.aclose()  # closing twice is harmless
