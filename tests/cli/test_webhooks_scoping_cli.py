"""``extapi-kit webhooks add/update --grant``: resource-scoped endpoints from the CLI (Z3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extapi_kit.cli import main


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_grants_and_key_on_endpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Z3: --grant and --key-id are stored, shown by list, replaced by update, cleared."""
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    added = _json(capsys, ["webhooks", "add", "https://example.com/h", "--grant", "projects=7,9",
                           "--grant", "orgs=acme", "--key-id", "key_1", "--owner", "acme",
                           "--json", *store])  # fmt: skip
    assert isinstance(added, dict)
    assert added["grants"] == {"projects": ["7", "9"], "orgs": ["acme"]}
    assert added["key_id"] == "key_1" and added["owner"] == "acme"
    assert main(["webhooks", "list", *store]) == 0
    line = capsys.readouterr().out
    assert "orgs=acme; projects=7,9; key=key_1" in line and "whsec_" not in line
    ep = added["id"]
    updated = _json(capsys, ["webhooks", "update", ep, "--grant", "projects=3", "--json", *store])
    assert isinstance(updated, dict) and updated["grants"] == {"projects": ["3"]}
    cleared = _json(capsys, ["webhooks", "update", ep, "--clear-grants", "--json", *store])
    assert isinstance(cleared, dict) and cleared["grants"] is None
    assert main(["webhooks", "add", "https://example.com/h", "--grant", "projects", *store]) != 0
