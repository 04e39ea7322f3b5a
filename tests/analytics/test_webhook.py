"""api_key.new_ip through the real dispatcher: catalogued, and heard only by the key's owner."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from extapi_kit.analytics import KeyActivity
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.webhooks import WebhookDispatcher, WebhookManager, webhook_store_from_url
from extapi_kit.webhooks.catalogue import API_KEY_NEW_IP, EventCatalogue
from tests.analytics.support import api
from tests.keys.support import cheap_hasher
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


async def test_new_ip_event_reaches_its_owner_and_the_operator_only(
    store_url: str, tmp_path: Path
) -> None:
    """K21: acme's key used from a new IP notifies acme's endpoint and the operator's, never
    globex's; the payload matches the catalogued schema; the second use from it sends nothing."""
    hooks = ["webhooks:read", "webhooks:write"]
    store = webhook_store_from_url(store_url)
    dispatcher = WebhookDispatcher(
        store,
        allow_loopback=True,
        catalogue=EventCatalogue([API_KEY_NEW_IP], strict=False),
        endpoint_cache_ttl=0,
    )
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", hasher=cheap_hasher(), cache_ttl=0)
    activity = KeyActivity(
        f"sqlite:///{tmp_path}/activity.db", keys=keys, on_event=dispatcher.publish
    )
    app = api().build(key_store=keys, audit_sink="memory://", key_activity=activity)
    recorder = Recorder()
    try:
        acme_hooks, _ = await keys.create("acme-hooks", owner="acme", scopes=hooks)
        globex_hooks, _ = await keys.create("globex-hooks", owner="globex", scopes=hooks)
        watched, secret = await keys.create(
            "acme-ci", owner="acme", scopes=["s"], metadata={"notify_new_ip": True}
        )
        async with serve(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True)
            await manager.add_endpoint(base + "/ops")
            await manager.add_endpoint(base + "/acme", principal=acme_hooks.to_principal())
            await manager.add_endpoint(base + "/globex", principal=globex_hooks.to_principal())
            transport = httpx.ASGITransport(app, client=("203.0.113.50", 4000))
            audit = app.app  # type: ignore[attr-defined]
            assert isinstance(audit, AuditMiddleware)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for _ in range(2):
                    r = await c.get("/api/v1/things", headers={"X-API-Key": secret})
                    assert r.status_code == 200
                    await audit.flush()
                    await activity.flush()
            await dispatcher.run_until_idle()
            await dispatcher.stop()
    finally:
        await activity.aclose()
        await keys.aclose()
        await store.aclose()
    got = {r.path: json.loads(r.body) for r in recorder.requests}
    assert sorted(got) == ["/acme", "/ops"]
    assert len(recorder.requests) == 2
    body = got["/acme"]
    assert body["type"] == "api_key.new_ip"
    assert body["data"]["key_id"] == watched.id
    assert body["data"]["owner"] == "acme"
    assert body["data"]["ip"] == "203.0.113.50"
    API_KEY_NEW_IP.schema.model_validate(body["data"])  # type: ignore[union-attr]
