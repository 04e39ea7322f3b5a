"""Key changes made with the CLI publish ``api_key.*`` events like server-side changes do."""

from __future__ import annotations

import json
from pathlib import Path

import anyio.to_thread
import pytest
import standardwebhooks

from extapi_kit.cli import main
from extapi_kit.webhooks import WebhookDispatcher, WebhookManager, webhook_store_from_url
from tests.webhooks.receivers import Recorder, serve


async def cli(argv: list[str]) -> int:
    """Run the CLI as its own process would: its own event loop (in a worker thread here)."""
    return await anyio.to_thread.run_sync(main, argv)


@pytest.mark.anyio
async def test_cli_key_lifecycle_reaches_webhook_receivers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """create, rotate and revoke from the CLI are written to the webhook store (from
    $EXTAPI_KIT_WEBHOOK_STORE) and delivered, signed, by the server's dispatcher; the payloads
    never carry the plaintext key or its hash (A9)."""
    hooks_url = f"sqlite:///{tmp_path}/hooks.db"
    keys = ["--store", f"sqlite:///{tmp_path}/keys.db"]
    store = webhook_store_from_url(hooks_url)
    recorder = Recorder()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True)
        ep = await manager.add_endpoint(base + "/hook", event_types=["api_key.created",
                                        "api_key.rotated", "api_key.revoked"])  # fmt: skip
        monkeypatch.setenv("EXTAPI_KIT_WEBHOOK_STORE", hooks_url)
        assert await cli(["keys", "create", "--name", "ci", "--json", *keys]) == 0
        created = json.loads(capsys.readouterr().out)
        plaintext, key_id = created["key"], created["id"]
        assert await cli(["keys", "rotate", key_id, "--json", *keys]) == 0
        rotated = json.loads(capsys.readouterr().out)
        monkeypatch.delenv("EXTAPI_KIT_WEBHOOK_STORE")
        assert (
            await cli(["keys", "revoke", rotated["id"], "--webhook-store", hooks_url, *keys]) == 0
        )
        assert await cli(["keys", "revoke", key_id, *keys]) == 0  # no store given: no event
        async with WebhookDispatcher(store, allow_loopback=True) as dispatcher:
            await dispatcher.run_until_idle()
        hook = standardwebhooks.Webhook(ep.secrets[0].value)
        seen = [hook.verify(r.body, r.headers) for r in recorder.requests]
    types = sorted(p["type"] for p in seen)
    assert types == ["api_key.created", "api_key.revoked", "api_key.rotated"], types
    bodies = b"".join(r.body for r in recorder.requests).decode()
    assert plaintext not in bodies and rotated["key"] not in bodies and "argon2" not in bodies
