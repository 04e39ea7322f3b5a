"""``extapi-kit usage show`` / ``set-quota`` and ``keys usage``, against real SQLite files."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

import extapi_kit.cli as cli
from extapi_kit.cli.usage import add_keys_usage, sparkline
from extapi_kit.keys.hashing import HmacHasher
from extapi_kit.keys.service import KeyService
from extapi_kit.usage import UsageTracker


@pytest.fixture
def usage_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/usage.db"
    monkeypatch.setenv("EXTAPI_KIT_USAGE_STORE", url)

    async def seed() -> None:
        tracker = UsageTracker(url)
        day = tracker.calendar.at(tracker.clock()).day
        for cls, outcome, n in (("read", "served", 5), ("write", "r:quota-exhausted", 2)):
            for _ in range(n):
                tracker.record("k1", "acme", day, cls, outcome)
        await tracker.aclose()

    asyncio.run(seed())
    return url


def test_sparkline_scales_to_the_largest_value() -> None:
    """Zero is blank, the maximum is a full block, and values scale in between."""
    assert sparkline([0, 1, 8, 4]) == " ▁█▄"
    assert sparkline([0, 0]) == "  " and sparkline([]) == ""


def test_usage_show_json_and_table(usage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``usage show --json`` gives the daily series and month; the table shows the sparkline."""
    assert cli.main(["usage", "show", "k1", "--days", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["total"] for d in data["days"]] == [0, 0, 7]
    assert data["days"][-1]["rejected"] == {"quota-exhausted": 2}
    assert data["month"]["served"] == 5 and data["quota_used"] == {"monthly": 0, "daily": 0}
    assert cli.main(["usage", "show", "acme", "--owner", "--days", "3"]) == 0
    out = capsys.readouterr().out
    assert "usage of owner acme" in out and "  █" in out and "quota-exhausted=2" in out
    assert cli.main(["usage", "show", "k1", "--days", "0"]) == 1
    assert "--days" in capsys.readouterr().err


def test_keys_usage_subcommand(
    usage_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``add_keys_usage`` gives the keys group a ``usage ID`` command with the same output, for
    a key of the key store (issue 18 §5: an unknown id exits 1)."""
    keys_url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", keys_url)

    async def create() -> str:
        svc = KeyService(keys_url, hasher=HmacHasher("pepper-for-usage-cli-tests"))
        record, _ = await svc.create("ci")
        await svc.aclose()
        tracker = UsageTracker(usage_url)
        day = tracker.calendar.at(tracker.clock()).day
        for _ in range(5):
            tracker.record(record.id, "acme", day, "read", "served")
        await tracker.aclose()
        return record.id

    key_id = asyncio.run(create())
    parser = argparse.ArgumentParser()
    keys = parser.add_subparsers().add_parser("keys").add_subparsers()
    add_keys_usage(keys)
    args = parser.parse_args(["keys", "usage", key_id, "--days", "2", "--json"])
    assert args.handler(args) == 0
    assert [d["read"] for d in json.loads(capsys.readouterr().out)["days"]] == [0, 5]


def test_set_quota_updates_the_key_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``usage set-quota`` writes the key store; --clear removes the quota; bad input fails."""
    keys_url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", keys_url)

    async def create() -> str:
        svc = KeyService(keys_url, hasher=HmacHasher("pepper-for-usage-cli-tests"))
        record, _ = await svc.create("ci", quota={"daily": 7})
        await svc.aclose()
        return record.id

    key_id = asyncio.run(create())
    assert cli.main(["usage", "set-quota", key_id, "--monthly", "1000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quota"] == {"daily": 7, "monthly": 1000}
    assert cli.main(["usage", "set-quota", key_id, "--clear", "--daily", "5"]) == 0
    assert '"daily": 5' in capsys.readouterr().out
    assert cli.main(["usage", "set-quota", key_id]) == 1
    assert cli.main(["usage", "set-quota", key_id, "--monthly", "-1"]) == 1
    assert cli.main(["usage", "set-quota", "nosuchkey", "--monthly", "1"]) == 1
