"""``extapi-kit keys report-leak``: a leaked key reported by hand, read from stdin by default."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.audit import audit_store_from_url
from extapi_kit.cli import main
from extapi_kit.keys.hashing import HmacHasher
from extapi_kit.keys.leaks import leak_store_from_url
from extapi_kit.keys.service import KeyService
from extapi_kit.webhooks import webhook_store_from_url

PEPPER = "cli-test-pepper-0123456789"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", PEPPER)
    return url


def _service(url: str) -> KeyService:
    return KeyService(url, hasher=HmacHasher(PEPPER, pepper_id="1"))


def create(url: str, owner: str = "acme") -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        svc = _service(url)
        try:
            record, key = await svc.create("ci", owner=owner)
            return record.id, key
        finally:
            await svc.aclose()

    return asyncio.run(go())


def status(url: str, key_id: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        svc = _service(url)
        try:
            return (await svc.get(key_id)).public_dict(__import__("time").time())
        finally:
            await svc.aclose()

    return asyncio.run(go())


def test_report_leak_reads_stdin_revokes_and_records(
    store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """K11: the key read from stdin is revoked, the report is stored with the URL, audited and
    published as api_key.leaked; the output names only the key id; a second run says it was
    already reported and publishes nothing more (K15)."""
    key_id, key = create(store)
    audit_url = f"sqlite:///{tmp_path}/audit.db"
    hooks_url = f"sqlite:///{tmp_path}/hooks.db"
    argv = [
        "keys", "report-leak", "--hasher", "hmac", "--url", "https://example.com/paste/1",
        "--audit-store", audit_url, "--webhook-store", hooks_url,
    ]  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"revoked key {key_id}"
    assert key.split("_")[3] not in out + err
    assert status(store, key_id)["status"] == "revoked"
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    assert main(argv) == 0
    assert "already reported" in capsys.readouterr().out

    async def read() -> tuple[Any, Any, Any]:
        leaks = leak_store_from_url(store)
        audit = audit_store_from_url(audit_url)
        hooks = webhook_store_from_url(hooks_url)
        try:
            reports, _ = await leaks.list()
            rows, _ = await audit.query()
            events = await hooks.list_events()
            return reports, rows, events
        finally:
            for s in (leaks, audit, hooks):
                await s.aclose()

    reports, rows, events = asyncio.run(read())
    assert [(r.key_id, r.url, r.reporter) for r in reports] == [
        (key_id, "https://example.com/paste/1", "cli")
    ]
    assert [r.extra["event"] for r in rows] == ["api_key.leaked"]
    leaked = [e for e in events if e.type == "api_key.leaked"]
    assert len(leaked) == 1 and leaked[0].data["owner"] == "acme"
    secret = key.split("_")[3]
    assert secret not in json.dumps([e.data for e in events])
    assert secret not in json.dumps([r.to_dict() for r in rows])


def test_report_leak_argument_flag_and_not_ours(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """K16: the key may be an argument; --action flag keeps it valid with an expiry; a key that
    is not ours (wrong secret) exits 1 and changes nothing; an empty stdin is an error."""
    key_id, key = create(store)
    code = main(["keys", "report-leak", key, "--hasher", "hmac", "--action", "flag", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["label"] == "true_positive" and data["report"]["action"] == "flagged"
    shown = status(store, key_id)
    assert shown["status"] == "active" and shown["expires_at"] and shown["leaked_at"]
    other_id, other = create(store)
    fake = other[: -6 - 43] + key.split("_")[3]  # other's id, key's secret and checksum
    assert main(["keys", "report-leak", fake, "--hasher", "hmac"]) == 1
    assert "nothing done" in capsys.readouterr().out
    assert status(store, other_id)["status"] == "active"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["keys", "report-leak", "--hasher", "hmac"]) == 1
    assert "no key given" in capsys.readouterr().err
