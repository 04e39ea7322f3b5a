"""Human-readable CLI output escapes control characters; JSON output stays valid JSON."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.cli import main
from extapi_kit.cli._output import safe
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.audit import AuditMiddleware
from tests.keys.support import cheap_hasher

EVIL = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def _assert_inert(text: str) -> None:
    assert not any(ch in text for ch in RAW_CONTROLS), repr(text)


def test_safe_escapes_every_control_and_keeps_printable_text() -> None:
    """M11: safe() escapes C0/C1 controls, DEL and bidi overrides, keeps accents and spaces."""
    assert safe(EVIL) == "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202e"
    assert safe("a\tb\nc\x7f") == "a\\tb\\nc\\x7f"
    assert safe("Café 東京 ok") == "Café 東京 ok"
    assert safe(42) == "42"


async def _denied(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise AssertionError("the key layer refuses first")


def _audit_evil_request(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/audit.db"

    async def go() -> None:
        keys = KeyService("memory://", hasher=cheap_hasher())
        audit = AuditMiddleware(ApiKeyMiddleware(_denied, store=keys), sink=url)
        transport = httpx.ASGITransport(audit, client=("203.0.113.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/api/%1b[2J%1b]0;owned%07/x")
            assert r.status_code == 401
        await audit.flush()
        await audit.aclose()
        await keys.aclose()

    asyncio.run(go())
    return url


def test_audit_query_table_escapes_an_attackers_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M11: an unauthenticated request to a path holding ESC[2J and an OSC title sequence is
    printed escaped by `extapi-kit audit query`; --json still carries the exact path."""
    url = _audit_evil_request(tmp_path)
    assert main(["audit", "query", "--store", url]) == 0
    out = capsys.readouterr().out
    _assert_inert(out)
    assert "/api/\\x1b[2J\\x1b]0;owned\\x07/x" in out
    assert main(["audit", "query", "--store", url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["records"][0]["path"] == "/api/\x1b[2J\x1b]0;owned\x07/x"


def test_keys_list_and_show_escape_stored_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M11: a key record written straight to the store with control characters in its name and
    owner is shown escaped by `keys list` and `keys show`."""
    url = f"sqlite:///{tmp_path}/keys.db"

    async def seed() -> str:
        svc = KeyService(url, hasher=cheap_hasher())
        try:
            record, _ = await svc.create("plain")
            import dataclasses

            evil = dataclasses.replace(record, name=EVIL, owner=EVIL, updated_at=time.time())
            await svc.store.update(evil)
            return record.id
        finally:
            await svc.aclose()

    key_id = asyncio.run(seed())
    for argv in (["keys", "list"], ["keys", "show", key_id]):
        assert main([*argv, "--store", url]) == 0
        out = capsys.readouterr().out
        _assert_inert(out)
        assert "\\x1b[2J" in out


def test_webhooks_and_usage_output_escape_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M11: `webhooks list` escapes event types and `usage show` the subject it names; the
    --json forms stay parseable JSON."""
    store = ["--store", f"sqlite:///{tmp_path}/hooks.db"]
    assert main(["webhooks", "add", "http://127.0.0.1:9/h", "--allow-loopback",
                 "--events", EVIL, *store]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["webhooks", "list", *store]) == 0
    out = capsys.readouterr().out
    _assert_inert(out)
    assert main(["webhooks", "list", "--json", *store]) == 0
    assert json.loads(capsys.readouterr().out)[0]["event_types"] == [EVIL]
    usage = ["--store", f"sqlite:///{tmp_path}/hooks.db"]  # an existing file, no usage in it
    assert main(["usage", "show", EVIL, *usage]) == 0
    out = capsys.readouterr().out
    _assert_inert(out)
    assert "\\x1b[2J" in out


def test_every_cli_line_goes_through_echo() -> None:
    """M11: no CLI module prints text except through echo() (print() only for json.dumps),
    so a new command group cannot forget the escaping."""
    import ast

    import extapi_kit.cli as cli_pkg

    offenders = []
    for path in sorted(Path(cli_pkg.__file__).parent.glob("*.py")):
        if path.name == "_output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"):
                continue
            arg = node.args[0] if node.args else None
            dumps = (
                isinstance(arg, ast.Call)
                and isinstance(arg.func, ast.Attribute)
                and arg.func.attr == "dumps"
            )
            if not dumps:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
