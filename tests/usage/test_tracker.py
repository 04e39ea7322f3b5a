"""UsageTracker: day and month rollover, queries, notifications once per period, retention."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError, StoreUnavailableError
from extapi_kit.stores import store_from_url
from extapi_kit.testing import FakeClock
from extapi_kit.usage import EVENT_EXHAUSTED, EVENT_WARNING, UsageTracker, parse_quota
from extapi_kit.usage._periods import Calendar
from extapi_kit.usage.store import Counts
from extapi_kit.usage.store_memory import MemoryUsageStore
from tests.usage.support import DEC_FIRST, MID_NOVEMBER, Events


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC).timestamp()


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_calendar_matches_datetime(now: float) -> None:
    """The cached calendar gives the same UTC day, month and resets as datetime for any instant."""
    info = Calendar().at(now)
    d = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    assert info.day == d.date().isoformat() and info.month == info.day[:7]
    assert info.day_reset - 86400 <= now < info.day_reset
    nxt = dt.datetime.fromtimestamp(info.month_reset, tz=dt.UTC)
    assert nxt.day == 1 and nxt.hour == 0 and info.month_reset > now
    assert dt.datetime.fromtimestamp(info.month_reset - 1, tz=dt.UTC).month == d.month


def test_parse_quota_accepts_periods_and_refuses_bad_limits() -> None:
    """Monthly and daily limits parse; negative, fractional and boolean limits are refused."""
    assert [(r.period, r.limit) for r in parse_quota({"monthly": 10, "daily": 2, "x": 1})] == [
        ("monthly", 10),
        ("daily", 2),
    ]
    assert parse_quota({}) == () and parse_quota(None) == ()
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ConfigurationError):
            parse_quota({"monthly": bad})


@pytest.mark.anyio
async def test_day_and_month_rollover_follow_the_clock(store_url: str) -> None:
    """Counts land on the UTC day of the injected clock, across a day and a month boundary."""
    clock = FakeClock(ts(2026, 11, 30, 23, 59, 59))
    tracker = UsageTracker(store_url, clock=clock)
    try:
        for cls, outcome in (("read", "served"), ("write", "errors")):
            info = tracker.calendar.at(clock())
            tracker.record("k1", "acme", info.day, cls, outcome)
        clock.advance(2)  # 2026-12-01 00:00:01
        day = tracker.calendar.at(clock()).day
        tracker.record("k1", "acme", day, "read", "r:quota-exhausted")
        tracker.record("k2", "acme", day, "search", "served")
        await tracker.flush()
        days = await tracker.get_usage("k1", days=2)
        assert [d["date"] for d in days] == ["2026-11-30", "2026-12-01"]
        assert days[0] | {"classes": None} == {
            "date": "2026-11-30",
            "read": 1,
            "write": 1,
            "total": 2,
            "served": 1,
            "errors": 1,
            "rejected": {},
            "classes": None,
        }
        assert days[1]["rejected"] == {"quota-exhausted": 1} and days[1]["total"] == 1
        assert (await tracker.get_month("k1", "2026-11"))["total"] == 2
        december = await tracker.get_month("k1")
        assert december["month"] == "2026-12" and december["read"] == 1
        owner = await tracker.get_owner_month("acme")
        assert owner["total"] == 2 and owner["classes"] == {"read": 1, "search": 1}
        assert [d["total"] for d in await tracker.get_owner_usage("acme", 2)] == [2, 2]
    finally:
        await tracker.aclose()


@pytest.mark.anyio
async def test_warning_and_exhausted_fire_once_per_period() -> None:
    """80% and 100% each notify once per month, with the period in the payload, again next month."""
    clock = FakeClock(MID_NOVEMBER)
    events = Events()
    tracker = UsageTracker("memory://", on_event=events, clock=clock)
    for month_start in (MID_NOVEMBER, DEC_FIRST + 5):
        clock.set(month_start)
        plan = tracker.quota_plan(clock(), "k1", {"monthly": 10}, None)
        assert plan is not None
        results = [await tracker.charge(plan, 1, clock(), "k1", None) for _ in range(12)]
        assert [d.allowed for d in results] == [True] * 10 + [False] * 2
        await tracker.flush()
    assert events.kinds() == [EVENT_WARNING, EVENT_EXHAUSTED] * 2
    warn = events.calls[0][1]
    assert warn["used"] == 8 and warn["limit"] == 10 and warn["threshold"] == 80
    assert warn["period_id"] == "2026-11" and warn["resets_at"] == "2026-12-01T00:00:00Z"
    assert events.calls[3][1]["period_id"] == "2026-12" and events.calls[3][1]["used"] == 10
    await tracker.aclose()


@pytest.mark.anyio
async def test_events_fire_once_across_two_trackers_on_one_store(durable_url: str) -> None:
    """Two trackers (two store instances) on one SQLite file or Redis notify each threshold once."""
    clock = FakeClock(MID_NOVEMBER)
    events: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append(kind)

    trackers = [UsageTracker(durable_url, on_event=on_event, clock=clock) for _ in range(2)]
    try:
        for i in range(8):
            t = trackers[i % 2]
            plan = t.quota_plan(clock(), "k1", {"daily": 5}, None)
            assert plan is not None
            await t.charge(plan, 1, clock(), "k1", None)
        for t in trackers:
            await t.flush()
        assert sorted(events) == [EVENT_EXHAUSTED, EVENT_WARNING]
    finally:
        for t in trackers:
            await t.aclose()


@pytest.mark.anyio
async def test_lowering_a_quota_below_use_still_notifies() -> None:
    """A quota lowered at runtime below what was used refuses and sends both notifications once."""
    clock = FakeClock(MID_NOVEMBER)
    events = Events()
    tracker = UsageTracker("memory://", on_event=events, clock=clock)
    for quota, n in (({"monthly": 100}, 50), ({"monthly": 40}, 3)):
        plan = tracker.quota_plan(clock(), "k1", quota, None)
        assert plan is not None
        for _ in range(n):
            await tracker.charge(plan, 1, clock(), "k1", None)
    await tracker.flush()
    assert events.kinds() == [EVENT_WARNING, EVENT_EXHAUSTED]
    await tracker.aclose()


class FlakyStore(MemoryUsageStore):
    """A memory store whose ``add`` fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.pruned: list[str] = []

    async def add(self, counts: Counts, *, ttl: int, batch: str | None = None) -> None:
        if self.down:
            raise StoreUnavailableError("down")
        await super().add(counts, ttl=ttl, batch=batch)

    async def prune(self, before_day: str) -> int:
        self.pruned.append(before_day)
        return await super().prune(before_day)

    async def days(self, subject: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        return await super().days(subject, days)


@pytest.mark.anyio
async def test_failed_flush_keeps_counts_and_retention_prunes_by_month() -> None:
    """A failed flush keeps its counts for the next one; pruning keeps retention_months months."""
    clock = FakeClock(MID_NOVEMBER)
    store = FlakyStore()
    tracker = UsageTracker(store, clock=clock, retention_months=13)
    day = tracker.calendar.at(clock()).day
    tracker.record("k1", None, day, "read", "served")
    with pytest.raises(StoreUnavailableError):
        await tracker.flush()
    tracker.record("k1", None, day, "read", "served")
    store.down = False
    await tracker.flush()
    assert (await tracker.get_usage("k1", 1))[0]["read"] == 2
    assert store.pruned == ["2025-11-01"]
    await tracker.aclose()
    assert await store.ping()  # a store passed in is not closed by the tracker


def test_tracker_refuses_bad_settings() -> None:
    """Retention below one month and a non-positive flush interval are configuration errors."""
    with pytest.raises(ConfigurationError):
        UsageTracker("memory://", retention_months=0)
    with pytest.raises(ConfigurationError):
        UsageTracker("memory://", flush_interval=0)
    with pytest.raises(ConfigurationError):
        store_from_url("usage", "nope")


@pytest.mark.anyio
async def test_background_flusher_writes_without_an_explicit_flush() -> None:
    """The flusher started by the first record writes pending counts on its own, then stops."""
    store = MemoryUsageStore()
    tracker = UsageTracker(store, clock=FakeClock(MID_NOVEMBER), flush_interval=0.01)
    tracker.record("k1", None, "2026-11-15", "read", "served")
    for _ in range(200):  # wait until flushed (bounded), never a timed assertion
        if (await store.days("k:k1", ["2026-11-15"]))["2026-11-15"]:
            break
        await asyncio.sleep(0.01)
    assert (await store.days("k:k1", ["2026-11-15"]))["2026-11-15"] == {"c:read": 1, "served": 1}
    await tracker.stop()
    tracker.record("k1", None, "2026-11-15", "read", "served")  # restarts the flusher
    await tracker.aclose()
    assert (await store.days("k:k1", ["2026-11-15"]))["2026-11-15"]["served"] == 2
