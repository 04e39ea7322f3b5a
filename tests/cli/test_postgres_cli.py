"""Every CLI command group that takes ``--store`` works with a PostgreSQL URL (issue 17)."""

from __future__ import annotations

import json

import pytest

from extapi_kit.cli import main

pytestmark = pytest.mark.postgres


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_store_commands_accept_a_postgresql_url(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """P6: keys, webhooks, audit and usage commands run against postgresql:// like sqlite://."""
    created = _json(capsys, ["keys", "create", "--store", pg_url, "--name", "ci", "--json"])
    assert isinstance(created, dict)
    listed = _json(capsys, ["keys", "list", "--store", pg_url, "--json"])
    assert "ci" in json.dumps(listed)
    added = _json(
        capsys,
        ["webhooks", "add", "https://example.com/hook", "--store", pg_url, "--json"],
    )
    assert isinstance(added, dict)
    endpoints = _json(capsys, ["webhooks", "list", "--store", pg_url, "--json"])
    assert "https://example.com/hook" in json.dumps(endpoints)
    assert _json(capsys, ["webhooks", "deliveries", "--store", pg_url, "--json"]) is not None
    doc = _json(capsys, ["audit", "query", "--store", pg_url, "--json"])
    assert isinstance(doc, dict) and doc["records"] == []
    pruned = _json(capsys, ["audit", "prune", "--store", pg_url, "--older-than", "1d", "--json"])
    assert isinstance(pruned, dict)
    key_id = str(created.get("id") or created["key"]["id"])
    usage = _json(capsys, ["usage", "show", key_id, "--store", pg_url, "--json"])
    assert key_id in json.dumps(usage)
