"""The management API: endpoints, validation, secret rotation, the test ping, catalogue, replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import standardwebhooks
from pydantic import BaseModel

from extapi_kit.exceptions import ConfigurationError, ConflictError, UnsafeURLError
from extapi_kit.testing import FakeClock
from extapi_kit.webhooks import (
    DeliveryStatus,
    EventCatalogue,
    WebhookDispatcher,
    WebhookManager,
    WebhookStore,
    webhook_store_from_url,
)
from extapi_kit.webhooks.retry import RetryPolicy
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(f"sqlite:///{tmp_path}/wh.db")
    yield s
    await s.aclose()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/h", "http://10.0.0.1/h", "http://169.254.169.254/", "ftp://example.com/",
     "http://user:pw@example.com/", "http://[::ffff:127.0.0.1]/", "http://2130706433/"],
)  # fmt: skip
async def test_registration_refuses_unsafe_urls(store: WebhookStore, url: str) -> None:
    """URLs are checked by the SSRF guard when an endpoint is added (W1, W2)."""
    with pytest.raises(UnsafeURLError):
        await WebhookManager(store).add_endpoint(url)
    assert await store.list_endpoints() == []


async def test_endpoint_lifecycle(store: WebhookStore) -> None:
    """Add, list by owner, update, disable, re-enable (clearing the failure state) and remove."""
    manager = WebhookManager(store)
    ep = await manager.add_endpoint(
        "https://example.com/hook", event_types=["a"], owner="key_1", rate_limit=5
    )
    assert ep.secrets[0].value.startswith("whsec_") and "whsec_" not in repr(ep)
    await manager.add_endpoint("https://example.org/other")
    assert [e.id for e in await manager.list_endpoints(owner="key_1")] == [ep.id]
    updated = await manager.update_endpoint(
        ep.id, description="prod", event_types=["a", "b"], rate_limit=None
    )
    assert (updated.description, updated.event_types, updated.rate_limit) == (
        "prod", ["a", "b"], None,
    )  # fmt: skip
    off = await manager.update_endpoint(ep.id, enabled=False)
    assert not off.enabled and off.disabled_reason
    await store.update_endpoint(ep.id, failing_since=T0)
    on = await manager.update_endpoint(ep.id, enabled=True)
    assert on.enabled and on.disabled_reason is None and on.failing_since is None
    with pytest.raises(ConfigurationError):
        await manager.update_endpoint(ep.id, rate_limit=0)
    with pytest.raises(UnsafeURLError):
        await manager.update_endpoint(ep.id, url="http://192.168.1.1/")
    await manager.remove_endpoint(ep.id)
    assert len(await manager.list_endpoints()) == 1


async def test_rotation_grace_expires(store: WebhookStore) -> None:
    """Old secrets sign only until the grace period ends; grace=0 drops them at once."""
    clock = FakeClock(T0)
    manager = WebhookManager(store, clock=clock)
    ep = await manager.add_endpoint("https://example.com/hook")
    new = await manager.rotate_secret(ep.id, grace=3600)
    rotated = await manager.get_endpoint(ep.id)
    assert rotated.signing_secrets(T0 + 10) == [new, ep.secrets[0].value]
    assert rotated.signing_secrets(T0 + 3600) == [new]
    newest = await manager.rotate_secret(ep.id, grace=0)
    assert (await manager.get_endpoint(ep.id)).signing_secrets(T0) == [newest]


async def test_send_test_reports_the_outcome(store: WebhookStore) -> None:
    """The test button sends a signed webhook.test ping and reports status and excerpt."""
    recorder = Recorder()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True)
        ep = await manager.add_endpoint(base + "/hook")
        result = await manager.send_test(ep.id)
        broken = await manager.add_endpoint("http://127.0.0.1:9/closed")
        refused = await manager.send_test(broken.id)
    assert result.ok and result.status == 200 and result.response_excerpt == "ok"
    payload = standardwebhooks.Webhook(ep.secrets[0].value).verify(
        recorder.requests[0].body, recorder.requests[0].headers
    )
    assert payload["type"] == "webhook.test"
    assert not refused.ok and refused.error == "connection_refused"
    # W16: each ping is listed as a delivery marked test, under the webhook-id it was sent with.
    pings = await manager.deliveries()
    assert [(d.test, d.status.value) for d in pings] == [(True, "succeeded"), (True, "failed")]
    assert pings[0].id == recorder.requests[0].headers["webhook-id"]


async def test_catalogue_validates_published_payloads(store: WebhookStore) -> None:
    """With a catalogue, unknown types and payloads not matching the schema are refused."""

    class JobDone(BaseModel):
        job_id: str
        seconds: float

    catalogue = EventCatalogue()
    catalogue.register("job.completed", "A job finished", schema=JobDone, version="2")
    dispatcher = WebhookDispatcher(store, catalogue=catalogue)
    event = await dispatcher.publish("job.completed", {"job_id": "j", "seconds": "1.5"})
    assert event.data == {"job_id": "j", "seconds": 1.5}
    with pytest.raises(ConfigurationError):
        await dispatcher.publish("job.completed", {"job_id": "j"})
    with pytest.raises(ConfigurationError):
        await dispatcher.publish("job.started", {})
    assert catalogue.get("job.completed") is not None and "job.completed" in catalogue
    assert catalogue.list()[0].json_schema() is not None


async def _failed_setup(
    store: WebhookStore, clock: FakeClock, base: str, n: int
) -> tuple[WebhookManager, WebhookDispatcher, str]:
    manager = WebhookManager(store, allow_loopback=True, clock=clock)
    ep = await manager.add_endpoint(base + "/h", event_types=["job.done"])
    dispatcher = WebhookDispatcher(
        store, clock=clock, allow_loopback=True, retry=RetryPolicy([0], jitter=0),
        endpoint_cache_ttl=0,
    )  # fmt: skip
    for i in range(n):
        clock.advance(1)
        await dispatcher.publish("job.done", {"i": i})
    await dispatcher.run_until_idle()
    return manager, dispatcher, ep.id


async def test_replay_one_delivery_and_all_failed_since(store: WebhookStore) -> None:
    """Replay resends one delivery, or all failed ones since a time, with the same webhook-id."""
    clock = FakeClock(T0)
    recorder = Recorder(status=500)
    async with serve(recorder) as base:
        manager, dispatcher, ep_id = await _failed_setup(store, clock, base, 4)
        failed = await manager.deliveries(endpoint_id=ep_id, status=DeliveryStatus.FAILED)
        assert len(failed) == 4
        recorder.status = 200
        await manager.replay_delivery(failed[0].id)
        assert await dispatcher.run_until_idle() == 1
        assert recorder.requests[-1].headers["webhook-id"] == failed[0].id
        count = await manager.replay_failed(ep_id, since=T0 + 3)
        assert count == 2  # the deliveries created at T0+3 and T0+4
        assert await dispatcher.run_until_idle() == 2
        ok = await manager.deliveries(endpoint_id=ep_id, status=DeliveryStatus.SUCCEEDED)
        assert {d.id for d in ok} == {failed[0].id, failed[2].id, failed[3].id}
        assert len(await manager.attempts(failed[0].id)) == 2
        await dispatcher.stop()


async def test_replay_events_to_a_new_endpoint_is_paced(store: WebhookStore) -> None:
    """Every event of a type since a time goes to a new endpoint, spaced at its rate limit."""
    clock = FakeClock(T0)
    old, new = Recorder(), Recorder()
    async with serve(old) as base, serve(new) as base2:
        manager, dispatcher, _ = await _failed_setup(store, clock, base, 5)
        fresh = await manager.add_endpoint(base2 + "/new", rate_limit=4)
        count = await manager.replay_events("job.done", since=T0 + 2, to_endpoint=fresh.id)
        assert count == 4
        queued = await manager.deliveries(endpoint_id=fresh.id)
        now = clock.now
        assert [d.next_attempt_at - now for d in queued] == [0.0, 0.25, 0.5, 0.75]
        assert await dispatcher.run_until_idle() == 1  # only the first is due yet
        clock.advance(2)
        assert await dispatcher.run_until_idle() == 3
        await dispatcher.stop()
    assert len(new.requests) == 4 and len(old.requests) == 5


async def test_replay_refuses_a_disabled_endpoint(store: WebhookStore) -> None:
    """Replaying to a disabled endpoint is refused until it is enabled again."""
    clock = FakeClock(T0)
    recorder = Recorder(status=500)
    async with serve(recorder) as base:
        manager, dispatcher, ep_id = await _failed_setup(store, clock, base, 1)
        await manager.update_endpoint(ep_id, enabled=False)
        with pytest.raises(ConflictError):
            await manager.replay_failed(ep_id, since=T0)
        await dispatcher.stop()
