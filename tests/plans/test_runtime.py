"""A plan change reaches every key on it at runtime, in this and other processes (K1)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from extapi_kit.keys.service import KeyService
from extapi_kit.plans import PlanService
from extapi_kit.testing import FakeClock
from tests.keys.support import cheap_hasher

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anyio


def _finish(p: subprocess.Popen[str]) -> str:
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"worker hung: {err[-2000:]}")
    assert p.returncode == 0, err[-2000:]
    return out


async def _change_seen_by_other_process(url: str, change: str) -> float:
    plans = PlanService(url)
    keys = KeyService(url, hasher=cheap_hasher(), plans=plans)
    try:
        await plans.create("free", rate_limits={"read": "10/minute"})
        await plans.create("pro", rate_limits={"read": "1000/minute"})
        _, key = await keys.create("acme", owner="acme", plan=None)
        await plans.assign_owner("acme", "free")
        worker = subprocess.Popen(  # noqa: ASYNC220 - a second OS process is the point
            [sys.executable, "-m", "tests.plans.worker", url, key, "99/minute"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        line = await anyio.to_thread.run_sync(worker.stdout.readline)
        assert line.split() == ["ready", "10/minute"], worker.stderr.read() if worker.stderr else ""
        changed = time.time()
        if change == "plan":
            await plans.update("free", rate_limits={"read": "99/minute"})
        else:  # the owner moves to another plan, which then says 99/minute
            await plans.update("pro", rate_limits={"read": "99/minute"})
            await plans.assign_owner("acme", "pro")
        out = (await anyio.to_thread.run_sync(_finish, worker)).split()[-1]
    finally:
        await keys.aclose()
        await plans.aclose()
    assert out != "timeout", "the other process never saw the plan change"
    return float(out) - changed


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("change", ["plan", "owner"])
async def test_plan_change_reaches_another_process_on_redis(redis_url: str, change: str) -> None:
    """K1: a key cached for an hour in another OS process follows a plan change (or its owner's
    move to another plan) within 1 s on Redis (pub/sub, like a revocation)."""
    lag = await _change_seen_by_other_process(redis_url, change)
    assert lag < 1.0, lag


@pytest.mark.postgres
@pytest.mark.slow
async def test_plan_change_reaches_another_process_on_postgres(pg_url: str) -> None:
    """K1: the same on PostgreSQL (LISTEN/NOTIFY, like a revocation)."""
    lag = await _change_seen_by_other_process(pg_url, "plan")
    assert lag < 1.0, lag


async def test_plan_change_reaches_cached_keys_in_process_at_once() -> None:
    """K1: in the process that made the change, a cached principal follows it at the next call,
    although neither cache TTL has run out (frozen clock)."""
    clock = FakeClock()
    plans = PlanService("memory://", clock=clock, cache_ttl=3600)
    keys = KeyService("memory://", hasher=cheap_hasher(), clock=clock, cache_ttl=3600, plans=plans)
    await plans.create("free", rate_limits={"read": "10/minute"}, quota={"daily": 100})
    _, key = await keys.create("k", plan="free")
    assert (await keys.verify(key)).rate_limits == {"read": "10/minute"}
    await plans.update("free", rate_limits={"read": "20/minute"}, quota={"daily": 5})
    principal = await keys.verify(key)
    assert principal.rate_limits == {"read": "20/minute"}
    assert principal.quota == {"daily": 5}


async def test_sqlite_plan_change_in_another_process_is_bounded_by_the_ttl(tmp_path: Path) -> None:
    """K1: on SQLite (no notification between processes) another process follows a plan change
    once its caches expire: never later than the cache TTL after the change."""
    url = f"sqlite:///{tmp_path}/keys.db"
    clock = FakeClock()
    admin_plans = PlanService(url, clock=clock)
    admin = KeyService(url, hasher=cheap_hasher(), clock=clock, plans=admin_plans)
    plans = PlanService(url, clock=clock, cache_ttl=10)
    worker = KeyService(url, hasher=cheap_hasher(), clock=clock, cache_ttl=10, plans=plans)
    try:
        await admin_plans.create("free", rate_limits={"read": "10/minute"})
        _, key = await admin.create("k", plan="free")
        clock.advance(5)
        assert (await worker.verify(key)).rate_limits["read"] == "10/minute"
        await admin_plans.update("free", rate_limits={"read": "20/minute"})
        assert (await worker.verify(key)).rate_limits["read"] == "10/minute"  # documented bound
        clock.advance(10)
        assert (await worker.verify(key)).rate_limits["read"] == "20/minute"
    finally:
        for svc in (admin, worker):
            await svc.aclose()
        await admin_plans.aclose()
        await plans.aclose()
