"""Retry schedule, status handling and endpoint health, driven by a FakeClock (no sleeping)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from extapi_kit.testing import FakeClock
from extapi_kit.webhooks import (
    Delivery,
    DeliveryStatus,
    Endpoint,
    WebhookDispatcher,
    WebhookManager,
    WebhookStore,
    webhook_store_from_url,
)
from extapi_kit.webhooks.retry import RetryPolicy
from tests.webhooks.receivers import Recorder, gone, ok, rate_limited, redirect, serve

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
SCHEDULE = (0, 5, 300, 1800)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(f"sqlite:///{tmp_path}/wh.db")
    yield s
    await s.aclose()


Factory = Callable[..., WebhookDispatcher]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    """Build FakeClock-driven dispatchers and stop them all at teardown (closing their senders)."""
    made: list[WebhookDispatcher] = []

    def build(store: WebhookStore, clock: FakeClock, **kw: object) -> WebhookDispatcher:
        options: dict[str, object] = {
            "retry": RetryPolicy(SCHEDULE, jitter=0),
            "clock": clock,
            "allow_loopback": True,
            "endpoint_cache_ttl": 0,
        }
        options.update(kw)
        made.append(WebhookDispatcher(store, **options))  # type: ignore[arg-type]
        return made[-1]

    yield build
    for d in made:
        await d.stop()


async def _one(manager: WebhookManager) -> Delivery:
    [delivery] = await manager.deliveries()
    return delivery


async def test_injected_clock_drives_the_retry_schedule(store: WebhookStore, make: Factory) -> None:
    """A 500 is retried exactly on the schedule as the FakeClock advances, then fails (W9)."""
    clock = FakeClock(T0)
    recorder = Recorder(status=500)
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock)
        await dispatcher.publish("e", {})
        due = T0
        for step, delay in enumerate([*SCHEDULE[1:], None], start=1):
            assert await dispatcher.run_until_idle() == 1
            d = await _one(manager)
            assert d.attempts == step
            if delay is None:
                assert d.status == DeliveryStatus.FAILED
                break
            due += delay
            assert d.status == DeliveryStatus.PENDING and d.next_attempt_at == due
            clock.set(due - 0.5)
            assert await dispatcher.run_until_idle() == 0  # not due yet
            clock.set(due)
    assert len(recorder.requests) == len(SCHEDULE)
    assert len({r.headers["webhook-id"] for r in recorder.requests}) == 1
    assert [a.status for a in await manager.attempts(d.id)] == [500] * len(SCHEDULE)


async def test_retry_after_is_honoured_and_throttling_backs_off(
    store: WebhookStore, make: Factory
) -> None:
    """A 429 with Retry-After: 120 waits 120 s, longer than the 5 s schedule step (W9)."""
    clock = FakeClock(T0)
    async with serve(rate_limited("120")) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock)
        await dispatcher.publish("e", {})
        await dispatcher.run_until_idle()
        d = await _one(manager)
        assert d.status == DeliveryStatus.PENDING and d.next_attempt_at == T0 + 120
        assert d.last_error == "429"


async def test_redirect_is_a_failure_and_not_followed(store: WebhookStore, make: Factory) -> None:
    """A 302 elsewhere is a failed attempt; the redirect target never sees a request (W9)."""
    clock = FakeClock(T0)
    target = Recorder()
    async with serve(target) as other, serve(redirect(other + "/stolen")) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock)
        await dispatcher.publish("e", {})
        await dispatcher.run_until_idle()
        d = await _one(manager)
        assert d.status == DeliveryStatus.PENDING and d.next_attempt_at == T0 + 5
        [attempt] = await manager.attempts(d.id)
        assert attempt.status == 302 or attempt.error == "redirect"
    assert target.requests == []


async def test_gone_disables_the_endpoint(store: WebhookStore, make: Factory) -> None:
    """A 410 fails the delivery, disables the endpoint with a reason and stops new deliveries."""
    clock = FakeClock(T0)
    disabled: list[Endpoint] = []
    async with serve(gone) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        ep = await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock, on_endpoint_disabled=disabled.append)
        await dispatcher.publish("e", {})
        await dispatcher.run_until_idle()
        d = await _one(manager)
        assert d.status == DeliveryStatus.FAILED and d.last_error == "410"
        ep = await manager.get_endpoint(ep.id)
        assert not ep.enabled and "410" in (ep.disabled_reason or "")
        assert [e.id for e in disabled] == [ep.id]
        await dispatcher.publish("e", {})
        assert len(await manager.deliveries()) == 1


async def test_persistently_failing_endpoint_is_disabled_after_the_window(
    store: WebhookStore, make: Factory
) -> None:
    """Failing without a success for disable_after disables it, with an operational event (W10)."""
    clock = FakeClock(T0)
    failing, watcher = Recorder(status=500), Recorder()
    async with serve(failing) as bad, serve(watcher) as ops:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        ep = await manager.add_endpoint(bad + "/h", event_types=["job.done"])
        await manager.add_endpoint(ops + "/ops", event_types=["webhook.endpoint.disabled"])
        dispatcher = make(
            store, clock, disable_after=3600, operational_events=True,
            retry=RetryPolicy([0] + [600] * 20, jitter=0),
        )  # fmt: skip
        await dispatcher.publish("job.done", {})
        await dispatcher.run_until_idle()
        assert (await manager.get_endpoint(ep.id)).failing_since == T0
        for _ in range(5):
            clock.advance(600)
            await dispatcher.run_until_idle()
            assert (await manager.get_endpoint(ep.id)).enabled
        clock.advance(600)  # now T0 + 3600: the window is over
        await dispatcher.run_until_idle()
        ep = await manager.get_endpoint(ep.id)
        assert not ep.enabled and "since" in (ep.disabled_reason or "")
        await dispatcher.run_until_idle()
    assert [r.path for r in watcher.requests] == ["/ops"]
    assert ep.id.encode() in watcher.requests[0].body
    # Its deliveries are kept (failed or pending) for replay after it is enabled again.
    assert await manager.deliveries(endpoint_id=ep.id)


async def test_a_success_resets_the_failure_clock(store: WebhookStore, make: Factory) -> None:
    """Sporadic failures never disable an endpoint: each success resets failing_since (W10)."""
    clock = FakeClock(T0)
    flaky = Recorder(status=500)
    async with serve(flaky) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        ep = await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock, disable_after=3600)
        for _ in range(4):
            flaky.status = 500
            await dispatcher.publish("e", {})
            await dispatcher.run_until_idle()
            assert (await manager.get_endpoint(ep.id)).failing_since == clock.now
            clock.advance(2000)
            flaky.status = 200
            await dispatcher.publish("e", {})
            await dispatcher.run_until_idle()
            assert (await manager.get_endpoint(ep.id)).failing_since is None
    assert (await manager.get_endpoint(ep.id)).enabled  # 8000 s of on/off failures


async def test_disabled_endpoint_deliveries_fail_without_an_attempt(
    store: WebhookStore, make: Factory
) -> None:
    """A delivery whose endpoint was disabled after publishing fails (kept for replay), unsent."""
    clock = FakeClock(T0)
    recorder = Recorder()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        ep = await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock)
        await dispatcher.publish("e", {})
        await manager.update_endpoint(ep.id, enabled=False)
        await dispatcher.run_until_idle()
        d = await _one(manager)
        assert d.status == DeliveryStatus.FAILED and d.attempts == 0
    assert recorder.requests == []


async def test_ok_endpoint_succeeds_first_time(store: WebhookStore, make: Factory) -> None:
    """A 2xx answer (204) is a success after one attempt, with no retry scheduled (W9)."""
    clock = FakeClock(T0)
    async with serve(ok) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        await manager.add_endpoint(base + "/h")
        dispatcher = make(store, clock)
        await dispatcher.publish("e", {})
        assert await dispatcher.run_until_idle() == 1
        d = await _one(manager)
        assert (d.status, d.attempts, d.last_error) == (DeliveryStatus.SUCCEEDED, 1, None)
