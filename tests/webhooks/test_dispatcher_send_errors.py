"""A send that raises, or a stored URL no socket accepts, is a failed attempt (W14)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from extapi_kit.testing import FakeClock
from extapi_kit.webhooks import (
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    WebhookDispatcher,
    WebhookManager,
    WebhookSender,
    WebhookStore,
    generate_secret,
    webhook_store_from_url,
)
from extapi_kit.webhooks.retry import RetryPolicy
from extapi_kit.webhooks.sender import AttemptResult
from extapi_kit.webhooks.ssrf import URLGuard

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
SCHEDULE = (0, 5, 300)
BAD_URLS = ("http://93.184.216.34:99999/hook", "http://93.184.216.34:0/hook")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(f"sqlite:///{tmp_path}/wh.db")
    yield s
    await s.aclose()


class _Exploding:
    """A sender that raises what no sender should (the OverflowError of a port past 65535)."""

    calls = 0

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        self.calls += 1
        raise OverflowError("port must be 0-65535.")

    async def aclose(self) -> None:
        pass


async def _stored(store: WebhookStore, url: str, now: float) -> Endpoint:
    """Write an endpoint straight into the store, as one registered before ports were checked."""
    secret = EndpointSecret(value=generate_secret(), created_at=now)
    endpoint = Endpoint(url=url, secrets=[secret], created_at=now)
    await store.add_endpoint(endpoint)
    return endpoint


async def test_raising_sender_is_a_failed_attempt_that_backs_off_and_disables(
    store: WebhookStore,
) -> None:
    """W14: a sender raising for a stored bad URL records attempts with an error class, backs
    off on the schedule, fails the delivery after the last one and disables the endpoint."""
    clock = FakeClock(T0)
    sender = _Exploding()
    dispatcher = WebhookDispatcher(
        store, sender=sender, clock=clock, retry=RetryPolicy(SCHEDULE, jitter=0),
        disable_after=300, endpoint_cache_ttl=0,
    )  # fmt: skip
    manager = WebhookManager(store, clock=clock)
    endpoint = await _stored(store, BAD_URLS[0], T0)
    await dispatcher.publish("job.completed", {"n": 1})
    assert await dispatcher.run_until_idle() == 1
    [delivery] = await manager.deliveries()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.next_attempt_at == T0 + 5 and delivery.last_error == "internal_error"
    clock.advance(5)
    assert await dispatcher.run_until_idle() == 1
    clock.advance(300)
    assert await dispatcher.run_until_idle() == 1
    [delivery] = await manager.deliveries()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 3
    attempts = await manager.attempts(delivery.id)
    assert [a.error for a in attempts] == ["internal_error"] * 3
    assert all(a.status is None for a in attempts) and sender.calls == 3
    disabled = await manager.get_endpoint(endpoint.id)
    assert not disabled.enabled and disabled.disabled_reason
    clock.advance(3600)
    assert await dispatcher.run_until_idle() == 0  # nothing is re-leased forever
    await dispatcher.stop()


@pytest.mark.parametrize("port", ["99999", "65536", "0"])
async def test_sender_never_raises_for_an_impossible_port(port: str) -> None:
    """W14: the real sender answers a URL with a port no socket accepts with an error class."""
    sender = WebhookSender(guard=URLGuard(allow_loopback=True), timeout=2)
    try:
        result = await sender.send(f"http://127.0.0.1:{port}/hook", {}, b"{}")
    finally:
        await sender.aclose()
    assert result.status is None and result.error == "invalid_url"


async def test_stored_bad_port_fails_and_is_not_re_leased_forever(store: WebhookStore) -> None:
    """W14: with the default sender, an endpoint stored with port 99999 gets attempts recorded
    (not a re-lease every 60 s with 0 attempts) and ends failed."""
    clock = FakeClock(T0)
    dispatcher = WebhookDispatcher(
        store, clock=clock, retry=RetryPolicy(SCHEDULE, jitter=0), endpoint_cache_ttl=0
    )
    manager = WebhookManager(store, clock=clock)
    await _stored(store, BAD_URLS[0], T0)
    await dispatcher.publish("job.completed", {"n": 1})
    for step in (0, 5, 300):
        clock.advance(step)
        assert await dispatcher.run_until_idle() == 1
    [delivery] = await manager.deliveries()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 3
    assert delivery.last_error == "invalid_url"
    await dispatcher.stop()
