"""KeyActivity: bounds, eviction, the window, the spray of unknown keys and the new-IP event."""

from __future__ import annotations

import pytest

from extapi_kit.analytics import KeyActivity
from extapi_kit.analytics.store_memory import MemoryActivityStore
from extapi_kit.keys.format import generate_key
from extapi_kit.testing import FakeClock
from tests.analytics.support import record as _rec
from tests.analytics.support import stack

pytestmark = pytest.mark.anyio

T0 = 1_796_000_000.0


async def test_spray_of_unknown_key_ids_creates_no_state(any_store_url: str) -> None:
    """K19: 300 invented (well-formed) keys, until throttled, leave no activity behind."""
    async with stack(any_store_url) as st:
        real, real_key = await st.keys.create("real", scopes=["s"])
        sprayed = [generate_key() for _ in range(300)]
        statuses = set()
        async with st.client("192.0.2.66") as c:
            for k in sprayed:
                statuses.add((await c.get("/api/v1/things", headers={"X-API-Key": k})).status_code)
        assert statuses == {401, 429}  # unknown, then throttled
        await st.settle()
        for k in sprayed:
            key_id = k.split("_")[2]
            assert await st.activity.store.load(key_id) == (0, None)
        assert st.activity.dropped == 0
        if isinstance(st.activity.store, MemoryActivityStore):
            assert len(st.activity.store) == 0
        # The real key, never used, has nothing either; its first use creates its document.
        assert (await st.activity.get(real.id))["requests"] == 0
        async with st.client("192.0.2.1") as c:
            await c.get("/api/v1/things", headers={"X-API-Key": real_key})
        await st.settle()
        assert (await st.activity.get(real.id))["requests"] == 1


async def test_unverified_refusals_never_create_and_pending_is_bounded() -> None:
    """K19: throttled attempts name unverified ids; they only add to keys with activity."""
    act = KeyActivity("memory://", clock=FakeClock(T0))
    extra = {"auth_refusal": {"key_id": "known", "reason": "mismatch"}}
    act.observe(_rec(None, "192.0.2.9", T0, status=401, extra=extra))
    for i in range(5000):
        thr = {"auth_refusal": {"key_id": f"junk{i}", "reason": "throttled"}}
        act.observe(_rec(None, "192.0.2.9", T0, status=429, extra=thr))
    act.observe(
        _rec(
            None,
            "192.0.2.9",
            T0,
            status=429,
            extra={"auth_refusal": {"key_id": "known", "reason": "throttled"}},
        )
    )
    assert len(act._pending) <= 1 + 1000
    assert act.dropped == 5000 - 1000
    await act.flush()
    store = act.store
    assert isinstance(store, MemoryActivityStore)
    assert len(store) == 1
    got = await act.get("known")
    assert got["refused"] == {"invalid-secret": 1, "throttled": 1}


async def test_addresses_are_bounded_and_busy_ones_survive_newcomers() -> None:
    """At most max_ips per key; the lowest count goes, and the newest address is always kept."""
    clock = FakeClock(T0)
    act = KeyActivity("memory://", max_ips=3, clock=clock)
    for _ in range(5):
        act.observe(_rec("k", "10.0.0.1", T0))
    for _ in range(3):
        act.observe(_rec("k", "10.0.0.2", T0 + 1))
    await act.flush()
    for i in range(10):  # a spray of single-use addresses
        act.observe(_rec("k", f"10.9.0.{i}", T0 + 10 + i))
        await act.flush()
    got = await act.get("k")
    assert [(r["ip"], r["count"]) for r in got["ips"]] == [
        ("10.0.0.1", 5),
        ("10.0.0.2", 3),
        ("10.9.0.9", 1),
    ]
    assert got["max_ips"] == 3


async def test_the_window_forgets_old_days_and_addresses() -> None:
    """After 30 days without a sighting an address is gone; old day counters stop counting."""
    clock = FakeClock(T0)
    act = KeyActivity("memory://", clock=clock)
    act.observe(_rec("k", "10.0.0.1", T0))
    await act.flush()
    clock.advance(31 * 86400)
    act.observe(_rec("k", "10.0.0.2", clock.now, status=503))
    await act.flush()
    got = await act.get("k")
    assert [r["ip"] for r in got["ips"]] == ["10.0.0.2"]
    assert got["requests"] == 1
    assert got["status"]["5xx"] == 1


async def test_new_ip_event_is_opt_in_once_per_address_and_names_the_owner(
    store_url: str,
) -> None:
    """K21: api_key.new_ip only for opted-in keys, once per new address, with the key's owner."""
    async with stack(store_url) as st:
        on, on_key = await st.keys.create(
            "watched", scopes=["s"], owner="acme", metadata={"notify_new_ip": True}
        )
        off, off_key = await st.keys.create("quiet", scopes=["s"], owner="globex")
        for ip in ("198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.1"):
            async with st.client(ip) as c:
                for k in (on_key, off_key):
                    assert (await c.get("/api/v1/things", headers={"X-API-Key": k})).is_success
            await st.settle()
    assert [(kind, d["ip"], d["key_id"], d["owner"]) for kind, d in st.events] == [
        ("api_key.new_ip", "198.51.100.1", on.id, "acme"),
        ("api_key.new_ip", "198.51.100.2", on.id, "acme"),
    ]
    assert all(d["key_id"] != off.id for _, d in st.events)


async def test_new_ip_events_are_capped_per_key_and_day() -> None:
    """K21: a key used from a botnet sends at most new_ip_events_per_day events a day."""
    clock = FakeClock(T0)
    events: list[dict[str, object]] = []
    keys_store: dict[str, object] = {}

    class Keys:
        async def get(self, key_id: str) -> object:
            return keys_store.get(key_id)

    class Rec:
        owner = "acme"
        metadata = {"notify_new_ip": True}

    keys_store["k"] = Rec()
    act = KeyActivity(
        "memory://",
        keys=Keys(),
        on_event=lambda t, d: events.append(d),
        clock=clock,
        new_ip_events_per_day=3,
    )
    for i in range(10):
        act.observe(_rec("k", f"10.1.0.{i}", T0 + i))
        await act.flush()
    assert len(events) == 3
