"""``extapi-kit webhooks``: endpoint commands, test ping, deliveries, replay, rotation, worker."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from extapi_kit.cli import main
from extapi_kit.webhooks import DeliveryStatus, WebhookManager, publish_event
from extapi_kit.webhooks.store import webhook_store_from_url
from tests.webhooks.receivers import Recorder, serve

ROOT = Path(__file__).resolve().parents[2]


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_endpoint_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add prints the secret once; list never shows it; update, rotate-secret and remove work."""
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    added = _json(capsys, ["webhooks", "add", "https://example.com/h", "--events", "a,b",
                           "--description", "prod", "--json", *store])  # fmt: skip
    assert isinstance(added, dict) and added["secret"].startswith("whsec_")
    ep_id = added["id"]
    listed = _json(capsys, ["webhooks", "list", "--json", *store])
    assert isinstance(listed, list) and listed[0]["event_types"] == ["a", "b"]
    assert "whsec_" not in json.dumps(listed) and listed[0]["secrets"] == 1
    updated = _json(capsys, ["webhooks", "update", ep_id, "--disable", "--json", *store])
    assert isinstance(updated, dict) and updated["enabled"] is False
    rotated = _json(capsys, ["webhooks", "rotate-secret", ep_id, "--grace", "1h", "--json", *store])
    assert isinstance(rotated, dict) and rotated["secret"] != added["secret"]
    assert main(["webhooks", "remove", ep_id, *store]) == 0
    capsys.readouterr()
    assert main(["webhooks", "remove", ep_id, *store]) == 1
    assert "no endpoint" in capsys.readouterr().err


def test_add_refuses_unsafe_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A loopback URL is refused unless --allow-loopback is given (W1)."""
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    assert main(["webhooks", "add", "http://127.0.0.1:8000/h", *store]) == 1
    assert "error" in capsys.readouterr().err
    assert main(["webhooks", "add", "http://127.0.0.1:8000/h", "--allow-loopback", *store]) == 0
    assert main(["webhooks", "replay", *store]) == 1  # no replay selector


@pytest.mark.anyio
async def test_test_deliveries_replay_and_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker delivers until SIGTERM; test pings; deliveries lists; replay requeues."""
    url = f"sqlite:///{tmp_path}/wh.db"
    recorder = Recorder()
    async with serve(recorder) as base:
        store = webhook_store_from_url(url)
        ep = await WebhookManager(store, allow_loopback=True).add_endpoint(base + "/h")
        argv = ["webhooks", "test", ep.id, "--allow-loopback", "--store", url]
        assert await asyncio.to_thread(main, argv) == 0
        assert "ok: HTTP 200" in capsys.readouterr().out
        for i in range(5):
            await publish_event(store, "job.done", {"i": i})
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "extapi_kit.cli", "webhooks", "worker", "--store", url,
            "--allow-loopback", cwd=str(ROOT), stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await recorder.wait_for(6, within=30)
            for _ in range(100):
                done = await store.list_deliveries(status=DeliveryStatus.SUCCEEDED)
                if len([d for d in done if not d.test]) == 5:
                    break
                await asyncio.sleep(0.05)
            argv = ["webhooks", "deliveries", "--status", "succeeded", "--json", "--store", url]
            assert await asyncio.to_thread(main, argv) == 0
            listed = json.loads(capsys.readouterr().out)
            assert [d["test"] for d in listed].count(True) == 1  # the ping, listed as a test
            listed = [d for d in listed if not d["test"]]
            assert len(listed) == 5
            argv = ["webhooks", "replay", "--delivery", listed[0]["id"], "--store", url]
            assert await asyncio.to_thread(main, argv) == 0
            await recorder.wait_for(7, within=30)
            assert recorder.requests[-1].headers["webhook-id"] == listed[0]["id"]
            argv = ["webhooks", "replay", "--endpoint", ep.id, "--since", "1h", "--store", url]
            assert await asyncio.to_thread(main, argv) == 0
            assert "requeued 0" in capsys.readouterr().out
        finally:
            worker.send_signal(signal.SIGTERM)
            assert await worker.wait() == 0
            await store.aclose()
