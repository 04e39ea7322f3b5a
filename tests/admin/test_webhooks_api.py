"""The admin webhook routes: endpoints CRUD, a real test ping, deliveries, attempts and replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.admin.conftest import API, Admin, admin_setup

pytestmark = pytest.mark.anyio

try:
    from extapi_kit.webhooks import Delivery, DeliveryStatus, Event, WebhookManager
    from extapi_kit.webhooks.signing import verify
    from extapi_kit.webhooks.store_memory import MemoryWebhookStore
    from tests.webhooks.receivers import Recorder, serve
except ImportError as exc:  # the webhooks package is optional for this area
    pytest.skip(f"extapi_kit.webhooks is not importable: {exc}", allow_module_level=True)


@pytest.fixture
async def wh() -> AsyncIterator[tuple[Admin, Any]]:
    """An admin app with a WebhookManager on a memory store (loopback allowed for receivers)."""
    manager = WebhookManager(MemoryWebhookStore(), allow_loopback=True)
    async with admin_setup(webhooks=manager) as admin:
        yield admin, manager


async def test_endpoint_crud_and_secret_shown_once(wh: tuple[Admin, Any]) -> None:
    """Add shows the signing secret once; list/show/update never do; delete removes it."""
    admin, _ = wh
    c, h = admin.client, admin.h
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["job.completed"]}
    r = await c.post(f"{API}/webhooks/endpoints", json=body, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    ep_id, secret = created["endpoint"]["id"], created["secret"]
    assert secret.startswith("whsec_") and created["endpoint"]["secret_count"] == 1
    listed = await c.get(f"{API}/webhooks/endpoints", headers=h)
    shown = await c.get(f"{API}/webhooks/endpoints/{ep_id}", headers=h)
    patched = await c.patch(
        f"{API}/webhooks/endpoints/{ep_id}", json={"enabled": False, "rate_limit": 5}, headers=h
    )
    assert patched.json()["enabled"] is False and patched.json()["rate_limit"] == 5
    for resp in (listed, shown, patched):
        assert resp.status_code == 200
        assert secret not in resp.text and "whsec_" not in resp.text
    rotated = await c.post(
        f"{API}/webhooks/endpoints/{ep_id}/rotate-secret", json={"grace": "1h"}, headers=h
    )
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != secret
    after = (await c.get(f"{API}/webhooks/endpoints/{ep_id}", headers=h)).json()
    assert after["secret_count"] == 2
    assert (await c.delete(f"{API}/webhooks/endpoints/{ep_id}", headers=h)).status_code == 204
    assert (await c.get(f"{API}/webhooks/endpoints/{ep_id}", headers=h)).status_code == 404


async def test_endpoint_grants_and_key_are_set_shown_and_replaced(wh: tuple[Admin, Any]) -> None:
    """Z3: an operator scopes a tenant's endpoint to its resources; bad grants are a 422."""
    admin, manager = wh
    c, h = admin.client, admin.h
    body = {"url": "http://127.0.0.1:9/t", "grants": {"projects": ["7"]}, "key_id": "key_t"}
    created = (await c.post(f"{API}/webhooks/endpoints", json=body, headers=h)).json()
    ep = created["endpoint"]
    assert ep["grants"] == {"projects": ["7"]} and ep["key_id"] == "key_t"
    assert (await manager.get_endpoint(ep["id"])).grants == {"projects": ["7"]}
    url = f"{API}/webhooks/endpoints/{ep['id']}"
    patched = await c.patch(url, json={"grants": {"projects": ["7", "9"]}}, headers=h)
    assert patched.json()["grants"] == {"projects": ["7", "9"]}
    cleared = await c.patch(url, json={"grants": None}, headers=h)
    assert cleared.json()["grants"] is None
    bad = await c.patch(url, json={"grants": {"no such type!": ["1"]}}, headers=h)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


async def test_bad_urls_are_422(wh: tuple[Admin, Any]) -> None:
    """A URL the SSRF guard refuses (metadata address, bad scheme) is a 422 problem."""
    admin, _ = wh
    for url in ("http://169.254.169.254/latest", "ftp://example.com/x"):
        r = await admin.client.post(f"{API}/webhooks/endpoints", json={"url": url}, headers=admin.h)
        assert r.status_code == 422, (url, r.text)


async def test_test_ping_reaches_a_real_receiver_signed(wh: tuple[Admin, Any]) -> None:
    """POST .../test sends a signed webhook.test ping to a receiver under uvicorn."""
    admin, _ = wh
    recorder = Recorder()
    async with serve(recorder) as base:
        created = await admin.client.post(
            f"{API}/webhooks/endpoints", json={"url": base + "/hook"}, headers=admin.h
        )
        ep_id, secret = created.json()["endpoint"]["id"], created.json()["secret"]
        r = await admin.client.post(f"{API}/webhooks/endpoints/{ep_id}/test", headers=admin.h)
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True and r.json()["status"] == 200
    [got] = recorder.requests
    verify(got.body, got.headers, secret)
    assert b"webhook.test" in got.body


async def test_deliveries_attempts_and_replay(wh: tuple[Admin, Any]) -> None:
    """Deliveries list by endpoint and status; attempts list; replay requeues failed ones."""
    admin, manager = wh
    c, h = admin.client, admin.h
    ep = (await c.post(f"{API}/webhooks/endpoints", json={"url": "http://127.0.0.1:9/h"},
                       headers=h)).json()["endpoint"]  # fmt: skip
    event = Event(type="job.completed", data={"id": 1})
    d1 = Delivery(event_id=event.id, endpoint_id=ep["id"], status=DeliveryStatus.FAILED)
    d2 = Delivery(event_id=event.id, endpoint_id=ep["id"], status=DeliveryStatus.FAILED)
    await manager.store.publish(event, [d1, d2])
    page = (await c.get(f"{API}/webhooks/deliveries", params={"endpoint_id": ep["id"]},
                        headers=h)).json()  # fmt: skip
    statuses = {d["id"]: d["status"] for d in page["data"]}
    assert statuses == {d1.id: "failed", d2.id: "failed"}
    attempts = await c.get(f"{API}/webhooks/deliveries/{d1.id}/attempts", headers=h)
    assert attempts.status_code == 200 and attempts.json()["data"] == []
    r = await c.post(f"{API}/webhooks/deliveries/{d1.id}/replay", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    r = await c.post(f"{API}/webhooks/endpoints/{ep['id']}/replay",
                     json={"since": "2000-01-01T00:00:00Z"}, headers=h)  # fmt: skip
    assert r.json() == {"requeued": 1}
    failed = await c.get(f"{API}/webhooks/deliveries", params={"status": "failed"}, headers=h)
    assert failed.json()["data"] == []
    assert (await c.post(f"{API}/webhooks/deliveries/nope/replay", headers=h)).status_code == 404
