"""PlanService edges: configuration, the resolution cache across two services on one SQLite file,
change notifications in process, concurrent deletes, and plan users past the first page."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError
from extapi_kit.keys.service import KeyService
from extapi_kit.plans import PlanService
from extapi_kit.testing import FakeClock
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio


def test_configuration_is_checked() -> None:
    """No store and a negative cache_ttl are ConfigurationErrors; the repr names the store."""
    with pytest.raises(ConfigurationError, match="needs a store"):
        PlanService(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cache_ttl"):
        PlanService("memory://", cache_ttl=-1)
    plans = PlanService("memory://", cache_ttl=0)
    assert repr(plans) == f"PlanService(store={plans.store!r})"


async def test_another_services_sqlite_change_is_seen_within_the_cache_ttl(tmp_path: Path) -> None:
    """K1: on SQLite a plan or owner assignment changed through another service (another
    process) is seen once cache_ttl has passed, not before; with cache_ttl=0 it is seen at once."""
    url = f"sqlite:///{tmp_path}/plans.db"
    clock = FakeClock(1_000.0)
    reader = PlanService(url, cache_ttl=10, clock=clock)
    fresh = PlanService(url, cache_ttl=0, clock=clock)
    writer = PlanService(url, clock=clock)
    try:
        await writer.create("free", rate_limits={"read": "5/minute"})
        await writer.create("pro", rate_limits={"read": "500/minute"})
        await writer.assign_owner("acme", "free")
        plan = await reader.plan("free")
        assert plan is not None and plan.rate_limits == {"read": "5/minute"}
        assert await reader.owner_plan("acme") == "free"
        await writer.update("free", rate_limits={"read": "7/minute"})
        await writer.assign_owner("acme", "pro")
        clock.advance(9.9)
        plan = await reader.plan("free")
        assert plan is not None and plan.rate_limits == {"read": "5/minute"}  # cached
        assert await reader.owner_plan("acme") == "free"
        plan = await fresh.plan("free")
        assert plan is not None and plan.rate_limits == {"read": "7/minute"}
        assert await fresh.owner_plan("acme") == "pro"
        clock.advance(0.2)
        plan = await reader.plan("free")
        assert plan is not None and plan.rate_limits == {"read": "7/minute"}
        assert await reader.owner_plan("acme") == "pro"
    finally:
        for svc in (reader, fresh, writer):
            await svc.aclose()


async def test_changes_through_the_same_store_drop_the_cache_and_notify_once() -> None:
    """K1: a listener registered twice is called once per change, with ``"*"``; an owner move
    and a plan update made through the service are seen at once despite a long cache_ttl."""
    plans = PlanService("memory://", cache_ttl=3600)
    calls: list[str] = []
    await plans.listen(calls.append)
    await plans.listen(calls.append)
    await plans.create("free", quota={"daily": 10})
    await plans.create("pro", quota={"daily": 1000})
    await plans.assign_owner("acme", "free")
    assert await plans.owner_plan("acme") == "free"
    plan = await plans.plan("free")
    assert plan is not None and plan.quota == {"daily": 10}
    before = len(calls)
    await plans.assign_owner("acme", "pro")
    assert await plans.owner_plan("acme") == "pro"
    await plans.update("free", quota={"daily": 20})
    plan = await plans.plan("free")
    assert plan is not None and plan.quota == {"daily": 20}
    assert calls[before:] == ["*", "*"]
    assert set(calls) == {"*"}


async def test_concurrent_deletes_of_one_plan_on_sqlite_have_one_winner(tmp_path: Path) -> None:
    """Two services (two workers) deleting the same unused plan at once on one SQLite file: one
    delete succeeds, the other is a NotFoundError (a 404 in the admin API), never a crash; the
    plan is gone for both."""
    url = f"sqlite:///{tmp_path}/plans.db"
    a, b = PlanService(url), PlanService(url)
    try:
        await a.create("trial")
        results = await asyncio.gather(a.delete("trial"), b.delete("trial"), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "NotFoundError"]
        for svc in (a, b):
            with pytest.raises(NotFoundError):
                await svc.get("trial")
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_plan_used_by_a_key_past_the_first_page_cannot_be_deleted() -> None:
    """K4: the "plan in use" check pages through every key, so a plan whose only user is a key
    beyond the first 1,000 is still refused with a ConflictError naming that key."""
    plans = PlanService("memory://")
    keys = KeyService("memory://", hasher=cheap_hasher(), plans=plans)
    await plans.create("legacy")
    for i in range(1000):
        await keys.create(f"k{i}")
    record, _ = await keys.create("old-partner", plan="legacy")
    assert await plans.users("legacy") == [f"key:{record.id}"]
    with pytest.raises(ConflictError, match=record.id):
        await plans.delete("legacy")
    await keys.update(record.id, plan=None)
    await plans.delete("legacy")
    with pytest.raises(NotFoundError):
        await plans.get("legacy")
    await keys.aclose()
