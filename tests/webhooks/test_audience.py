"""Who may receive an event at all (case Z8): tenant endpoints hear only of their own owner.

A self-service endpoint (tied to an API key) receives events about its own owner (``api_key.*``
name it from the payload's ``owner``) or about resources within its grants; events that name
neither, and other owners' events, go only to operator endpoints (registered without a key).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.keys import KeyService
from extapi_kit.keys.models import KeyRecord
from extapi_kit.webhooks import (
    KeyGrants,
    WebhookDispatcher,
    WebhookManager,
    WebhookStore,
    webhook_store_from_url,
)
from extapi_kit.webhooks.models import Endpoint
from extapi_kit.webhooks.scoping import OWNER_RESOURCE, audience_allows
from tests.keys.support import cheap_hasher
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(store_url)
    yield s
    await s.aclose()


def test_audience_rule() -> None:
    """Z8: operator endpoints take everything; a tenant endpoint needs its owner or a resource."""
    operator = Endpoint(url="http://x/o", owner="acme")
    tenant = Endpoint(url="http://x/t", owner="acme", key_id="k1")
    ownerless = Endpoint(url="http://x/n", key_id="k2")
    for resources in ({}, {OWNER_RESOURCE: ["globex"]}, {"projects": ["9"]}):
        assert audience_allows(operator, resources)
    assert not audience_allows(tenant, {})
    assert not audience_allows(tenant, {OWNER_RESOURCE: ["globex"]})
    assert not audience_allows(tenant, {OWNER_RESOURCE: ["acme", "globex"]})
    assert audience_allows(tenant, {OWNER_RESOURCE: ["acme"]})
    assert audience_allows(tenant, {"projects": ["9"]})  # grants decide next
    assert not audience_allows(tenant, {OWNER_RESOURCE: ["globex"], "projects": ["9"]})
    assert not audience_allows(ownerless, {OWNER_RESOURCE: ["acme"]})


async def test_self_service_endpoints_never_hear_of_other_owners(
    store: WebhookStore, tmp_path: Path
) -> None:
    """Z8, K7, every backend, real receiver: another owner's api_key.created, quota and credits
    events, and events naming nobody, reach only the operator's endpoint; a tenant endpoint
    gets its own owner's key and credits events and (if unrestricted) resource events; a
    project-scoped one only its project's."""
    dispatcher = WebhookDispatcher(
        store,
        allow_loopback=True,
        resource_fields={"project_id": "projects"},
        endpoint_cache_ttl=0,
    )

    async def on_key_event(kind: str, record: KeyRecord) -> None:
        await dispatcher.publish(kind, record.public_dict(time.time()))

    keys = KeyService(
        f"sqlite:///{tmp_path}/keys.db", hasher=cheap_hasher(), cache_ttl=0, on_event=on_key_event
    )
    dispatcher.key_grants = KeyGrants(keys, ttl=0)
    hooks = ["webhooks:read", "webhooks:write"]
    reader, _ = await keys.create("acme-read", owner="acme", scopes=["projects:read", *hooks])
    scoped, _ = await keys.create("acme-p1", owner="acme", scopes=hooks, grants={"projects": ["1"]})
    recorder = Recorder()
    try:
        async with serve(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True)
            await manager.add_endpoint(base + "/ops")
            await manager.add_endpoint(base + "/acme", principal=reader.to_principal())
            await manager.add_endpoint(base + "/acme-p1", principal=scoped.to_principal())

            other, _ = await keys.create("globex-admin", owner="globex", scopes=["admin"])
            mine, _ = await keys.create("acme-ci", owner="acme", scopes=["projects:read"])
            await keys.revoke(other.id)
            quota: dict[str, Any] = {"key_id": other.id, "owner": "globex", "percent": 80}
            await dispatcher.publish("api_key.quota_warning", quota)
            low = {"key_id": other.id, "owner": "globex", "scope": "key", "remaining": 3}
            await dispatcher.publish("credits.low", low)
            await dispatcher.publish(
                "credits.exhausted", {**low, "key_id": mine.id, "owner": "acme"}
            )
            await dispatcher.publish("platform.notice", {"text": "maintenance"})
            await dispatcher.publish("job.completed", {"project_id": 1})
            await dispatcher.publish("job.completed", {"project_id": 9})
            await dispatcher.run_until_idle()
            await dispatcher.stop()
    finally:
        await keys.aclose()

    got: dict[str, list[tuple[str, Any]]] = {}
    for r in recorder.requests:
        body = json.loads(r.body)
        data = body["data"]
        got.setdefault(r.path, []).append(
            (body["type"], data.get("id") or data.get("key_id") or data.get("project_id"))
        )
    assert sorted(got["/ops"], key=str) == sorted(
        [
            ("api_key.created", other.id),
            ("api_key.created", mine.id),
            ("api_key.revoked", other.id),
            ("api_key.quota_warning", other.id),
            ("credits.low", other.id),
            ("credits.exhausted", mine.id),
            ("platform.notice", None),
            ("job.completed", 1),
            ("job.completed", 9),
        ],
        key=str,
    )
    assert sorted(got["/acme"], key=str) == sorted(
        [
            ("api_key.created", mine.id),
            ("credits.exhausted", mine.id),
            ("job.completed", 1),
            ("job.completed", 9),
        ],
        key=str,
    )
    assert got["/acme-p1"] == [("job.completed", 1)]
    assert all("globex" not in r.body.decode() for r in recorder.requests if r.path != "/ops")
