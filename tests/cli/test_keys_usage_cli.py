"""Usage fields in ``extapi-kit keys show`` and ``keys list`` (issue 9), on SQLite and Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.cli import main
from extapi_kit.usage import UsageTracker
from tests.support.redis_server import RedisServer

PEPPER = "cli-usage-test-pepper-0123456789"


@pytest.fixture
def keys_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite key store in $EXTAPI_KIT_STORE, no usage store configured, HMAC pepper set."""
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", PEPPER)
    monkeypatch.delenv("EXTAPI_KIT_USAGE_STORE", raising=False)
    return url


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def create(capsys: pytest.CaptureFixture[str], name: str) -> str:
    made = cli_json(capsys, "keys", "create", "--name", name, "--hasher", "hmac")
    return str(made["id"])


def seed(url: str, key_id: str, *, served: int, rejected: int = 0, charge: int = 0) -> None:
    """Count requests for today and charge a monthly quota of 10, through a real tracker."""

    async def go() -> None:
        tracker = UsageTracker(url)
        day = tracker.calendar.at(tracker.clock()).day
        for _ in range(served):
            tracker.record(key_id, None, day, "read", "served")
        for _ in range(rejected):
            tracker.record(key_id, None, day, "write", "r:quota-exhausted")
        now = tracker.clock()
        plan = tracker.quota_plan(now, key_id, {"monthly": 10}, None)
        assert plan is not None
        for _ in range(charge):
            await tracker.charge(plan, 1, now, key_id, None)
        await tracker.aclose()

    asyncio.run(go())


def test_show_and_list_read_the_usage_store(
    keys_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """show/list --json carry today's and this month's requests and the quota use; the text
    forms show them too; a key without traffic shows zeros and no quota."""
    usage_url = f"sqlite:///{tmp_path}/usage.db"
    monkeypatch.setenv("EXTAPI_KIT_USAGE_STORE", usage_url)
    busy, idle = create(capsys, "busy"), create(capsys, "idle")
    assert cli(capsys, "usage", "set-quota", busy, "--monthly", "10")[0] == 0
    seed(usage_url, busy, served=4, rejected=1, charge=3)
    shown = cli_json(capsys, "keys", "show", busy)
    usage = shown["usage"]
    assert (usage["today"], usage["month"], len(usage["month_id"])) == (5, 5, 7)
    quota = usage["quota"]["monthly"]
    assert (quota["limit"], quota["used"], quota["remaining"]) == (10, 3, 7)
    assert quota["resets_at"].endswith("-01T00:00:00Z")
    listed = {k["id"]: k["usage"] for k in cli_json(capsys, "keys", "list")}
    assert listed[busy] == usage
    assert listed[idle]["today"] == 0 and "quota" not in listed[idle]
    code, out, _ = cli(capsys, "keys", "show", busy)
    assert code == 0 and "requests today" in out and "3 of 10 used, 7 left" in out
    code, out, _ = cli(capsys, "keys", "list")
    assert code == 0 and "TODAY" in out and "MONTH" in out
    (row,) = [line for line in out.splitlines() if line.startswith(busy)]
    assert "5/10" in row.split()


def test_usage_store_defaults_to_the_key_store(
    keys_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --usage-store or $EXTAPI_KIT_USAGE_STORE the counters are read from the key
    store's file (the usage tables share it), like ``extapi-kit usage``."""
    key_id = create(capsys, "k")
    seed(keys_url, key_id, served=2)
    assert cli_json(capsys, "keys", "show", key_id)["usage"]["today"] == 2
    other = keys_url.replace("keys.db", "other.db")
    shown = cli_json(capsys, "keys", "show", key_id, "--usage-store", other)
    assert shown["usage"]["today"] == 0  # the option wins; a missing file reads as empty


def test_absent_usage_store_shows_zeros_and_is_not_created(
    keys_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A usage SQLite file that does not exist gives zeros (and quota limits with 0 used) and
    is not created by reading."""
    missing = tmp_path / "nowhere" / "usage.db"
    monkeypatch.setenv("EXTAPI_KIT_USAGE_STORE", f"sqlite:///{missing}")
    key_id = create(capsys, "k")
    assert cli(capsys, "usage", "set-quota", key_id, "--daily", "5")[0] == 0
    usage = cli_json(capsys, "keys", "show", key_id)["usage"]
    assert (usage["today"], usage["month"]) == (0, 0)
    assert usage["quota"]["daily"]["used"] == 0 and usage["quota"]["daily"]["remaining"] == 5
    assert "available" not in usage
    assert cli(capsys, "keys", "list")[0] == 0
    assert not missing.exists() and not missing.parent.exists()


def test_unreachable_usage_store_warns_and_shows_zeros(
    keys_url: str, private_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """L8: with the Redis usage store down, show and list still succeed with zeros, mark the
    usage unavailable and warn on stderr naming the store's host:port (issue 18 §5)."""
    key_id = create(capsys, "k")
    private_redis.stop()
    code, out, err = cli(
        capsys, "keys", "show", key_id, "--usage-store", private_redis.url, "--json"
    )
    assert code == 0
    usage = json.loads(out)["usage"]
    assert (usage["today"], usage["available"]) == (0, False)
    assert "usage unavailable" in err
    host_port = private_redis.url.split("//", 1)[1].split("/", 1)[0]
    assert f"redis unavailable at {host_port}: ConnectionError" in err
    code, out, err = cli(capsys, "keys", "list", "--usage-store", private_redis.url)
    assert code == 0 and key_id in out and "usage unavailable" in err


def test_show_reads_redis_counters(
    keys_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counters written to Redis by a tracker are what ``keys show`` reports."""
    key_id = create(capsys, "k")
    seed(redis_url, key_id, served=6, rejected=2)
    usage = cli_json(capsys, "keys", "show", key_id, "--usage-store", redis_url)["usage"]
    assert (usage["today"], usage["month"]) == (8, 8)
