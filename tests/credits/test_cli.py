"""``extapi-kit credits`` against real SQLite files: show, set, add, clear, create-key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import extapi_kit.cli as cli
from extapi_kit.credits import CreditLedger
from extapi_kit.keys.service import KeyService
from tests.keys.support import cheap_hasher


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    keys_url = f"sqlite:///{tmp_path}/keys.db"
    credits_url = f"sqlite:///{tmp_path}/credits.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", keys_url)
    monkeypatch.setenv("EXTAPI_KIT_CREDITS_STORE", credits_url)
    return keys_url, credits_url


def _key(keys_url: str) -> str:
    async def make() -> str:
        svc = KeyService(keys_url, hasher=cheap_hasher())
        record, _ = await svc.create("partner", owner="acme")
        await svc.aclose()
        return record.id

    return asyncio.run(make())


def test_set_add_show_clear(stores: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """set, add (with a reason) and clear change the balance; show prints it with its log."""
    key_id = _key(stores[0])
    assert cli.main(["credits", "set", "100", "--key", key_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["remaining"] == 100
    assert cli.main(["credits", "add", "-30", "--key", key_id, "--reason", "refund"]) == 0
    out = capsys.readouterr().out
    assert f"key {key_id}: 70" in out and "(refund)" in out and "by cli" in out
    assert cli.main(["credits", "add", "500", "--owner", "acme"]) == 0
    capsys.readouterr()
    assert cli.main(["credits", "show", "--owner", "acme", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["scope"], data["remaining"]) == ("owner", 500)
    assert data["history"][0]["actor"].startswith("cli")
    assert cli.main(["credits", "clear", "--key", key_id]) == 0
    assert "not metered" in capsys.readouterr().out


def test_mistakes_exit_1_with_a_message(
    stores: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown key, both/neither target, or a negative balance exit 1 and change nothing."""
    key_id = _key(stores[0])
    assert cli.main(["credits", "set", "5", "--key", "nope"]) == 1
    assert cli.main(["credits", "set", "5"]) == 1
    assert cli.main(["credits", "set", "5", "--key", key_id, "--owner", "acme"]) == 1
    assert cli.main(["credits", "set", "-5", "--key", key_id]) == 1
    err = capsys.readouterr().err
    assert "exactly one of --key" in err and "nope" in err
    assert asyncio.run(_balance(stores[1], key_id)) is None


async def _balance(url: str, key_id: str) -> int | None:
    ledger = CreditLedger(url)
    try:
        return await ledger.balance(key_id=key_id)
    finally:
        await ledger.aclose()


def test_create_key_with_uses(stores: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """``credits create-key --uses 3`` creates a key with a balance of 3, logged."""
    assert cli.main(["credits", "create-key", "trial", "--uses", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["uses"] == 3 and data["secret"]
    assert asyncio.run(_balance(stores[1], data["key_id"])) == 3
    assert cli.main(["credits", "create-key", "bad", "--uses", "0"]) == 1
