"""``api_key.leaked`` reaches the key's owner only, and the endpoint mounts in an ExternalAPI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import uvicorn

from extapi_kit import ExternalAPI
from extapi_kit.examples.studio.app import create_app
from extapi_kit.keys import KeyService
from extapi_kit.keys.leaks import LeakReport, LeakResponder, leak_event_data
from extapi_kit.keys.leaks_github import PublicKeys, SecretScanningEndpoint
from extapi_kit.keys.models import KeyRecord
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.webhooks import (
    EventCatalogue,
    KeyGrants,
    WebhookDispatcher,
    WebhookManager,
    webhook_store_from_url,
)
from extapi_kit.webhooks.catalogue import KEY_LEAKED
from tests.keys.support import cheap_hasher
from tests.keys.test_leaks import KEY_ID, Provider, matches, serve
from tests.webhooks.receivers import Recorder
from tests.webhooks.receivers import serve as serve_receiver

pytestmark = pytest.mark.anyio


async def test_leaked_event_reaches_only_the_owner(tmp_path: Path) -> None:
    """K16 / Z8: the api_key.leaked webhook of acme's key reaches acme's self-service endpoint
    and the operator's, never globex's endpoint; its payload matches the catalogue schema and
    holds the URL where the key was found but not the key."""
    store = webhook_store_from_url(f"sqlite:///{tmp_path}/hooks.db")
    catalogue = EventCatalogue([KEY_LEAKED], strict=False)
    dispatcher = WebhookDispatcher(
        store, allow_loopback=True, endpoint_cache_ttl=0, catalogue=catalogue
    )
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", hasher=cheap_hasher(), cache_ttl=0)
    dispatcher.key_grants = KeyGrants(keys, ttl=0)

    async def on_leak(report: LeakReport, record: KeyRecord) -> None:
        data = leak_event_data(report, record)
        await dispatcher.publish("api_key.leaked", data, event_id="evt_" + report.id)

    responder = LeakResponder(keys, f"sqlite:///{tmp_path}/leaks.db", on_leak=on_leak)
    hooks = ["webhooks:read", "webhooks:write"]
    acme_hook, _ = await keys.create("acme-hooks", owner="acme", scopes=hooks)
    globex_hook, _ = await keys.create("globex-hooks", owner="globex", scopes=hooks)
    leaked, secret = await keys.create("acme-ci", owner="acme")
    recorder = Recorder()
    try:
        async with serve_receiver(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True)
            await manager.add_endpoint(base + "/ops")
            await manager.add_endpoint(base + "/acme", principal=acme_hook.to_principal())
            await manager.add_endpoint(base + "/globex", principal=globex_hook.to_principal())
            result = await responder.report(secret, url="https://github.com/a/b/blob/1/x.env")
            assert result.label == "true_positive" and result.new
            again = await responder.report(secret, url="https://github.com/a/b/blob/1/x.env")
            assert not again.new
            await dispatcher.run_until_idle()
            await dispatcher.stop()
    finally:
        await responder.aclose()
        await keys.aclose()
        await store.aclose()
    leaks = [r for r in recorder.requests if json.loads(r.body)["type"] == "api_key.leaked"]
    assert sorted(r.path for r in leaks) == ["/acme", "/ops"]
    data = json.loads(leaks[0].body)["data"]
    assert data["key_id"] == leaked.id and data["url"] == "https://github.com/a/b/blob/1/x.env"
    assert data["action"] == "revoked" and data["owner"] == "acme"
    assert all(secret.split("_")[3] not in r.body.decode() for r in recorder.requests)


async def test_endpoint_mounted_as_a_public_route_of_an_external_api() -> None:
    """K11: mounted with api.expose(..., public=True) in a built stack, the endpoint is reached
    without an API key (the provider authenticates by signature) while the API's other routes
    still require one; the stack's route body limit applies before the endpoint reads."""
    provider = Provider()
    provider.add(KEY_ID)
    keys = KeyService("memory://", hasher=cheap_hasher())
    responder = LeakResponder(keys)
    _, secret = await keys.create("ci")
    async with serve(provider) as keys_base:
        endpoint = SecretScanningEndpoint(responder, PublicKeys(keys_base + "/k"))
        api = ExternalAPI(title="Leaks")

        @api.get("/things")
        async def things(req: HandlerRequest) -> list[int]:
            return [1]

        api.expose(
            "POST", "/secret-scanning", to=endpoint, public=True, body_limit="2KiB",
            idempotent=False, include_in_schema=False,
        )  # fmt: skip
        app = api.build(key_store=keys, audit_sink=None)
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            body = matches(secret)
            signed = {
                "github-public-key-identifier": KEY_ID,
                "github-public-key-signature": provider.sign(body),
            }
            resp = await client.post("/api/v1/secret-scanning", content=body, headers=signed)
            assert resp.status_code == 200, resp.text
            assert resp.json()[0]["label"] == "true_positive"
            assert (await client.get("/api/v1/things")).status_code == 401
            big = matches(*(["x" * 100] * 40))
            signed["github-public-key-signature"] = provider.sign(big)
            resp = await client.post("/api/v1/secret-scanning", content=big, headers=signed)
            assert resp.status_code == 413
    assert "/api/v1/secret-scanning" not in json.dumps(api.openapi())
    await keys.aclose()


async def test_studio_example_receives_reports(tmp_path: Path) -> None:
    """K11, the example: the studio serves /api/v1/secret-scanning/github without an API key,
    revokes the reported key, lists the report at /admin/v1/leaks, and documents api_key.leaked
    in its webhooks catalogue (the endpoint itself stays out of the OpenAPI document)."""
    provider = Provider()
    provider.add(KEY_ID)
    async with serve(provider) as keys_base:
        app = create_app(tmp_path / "data", leak_keys_url=keys_base + "/keys")
        keys: KeyService = app.state.keys
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", proxy_headers=False
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(1000):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            record, secret = await keys.create("partner", owner="acme")
            _, admin_key = await keys.create("ops", scopes=["admin"])
            body = matches(secret)
            signed = {
                "github-public-key-identifier": KEY_ID,
                "github-public-key-signature": provider.sign(body),
            }
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                resp = await client.post(
                    "/api/v1/secret-scanning/github", content=body, headers=signed
                )
                assert resp.status_code == 200, resp.text
                assert resp.json()[0]["label"] == "true_positive"
                assert (await keys.get(record.id)).revoked_at is not None
                listed = await client.get("/admin/v1/leaks", headers={"X-API-Key": admin_key})
                assert [d["key_id"] for d in listed.json()["data"]] == [record.id]
                doc = (await client.get("/api/v1/openapi.json")).json()
                assert "api_key.leaked" in json.dumps(doc)
                assert "secret-scanning" not in json.dumps(doc["paths"])
        finally:
            server.should_exit = True
            await task
