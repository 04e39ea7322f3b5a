"""``extapi-kit keys show <id> --activity``: the key's analytics as printed, text and JSON."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from extapi_kit.analytics import KeyActivity
from extapi_kit.cli import main
from tests.analytics.support import record

PEPPER = "cli-activity-test-pepper-0123456789"


@pytest.fixture
def keys_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite key store in $EXTAPI_KIT_STORE (the activity table shares its file)."""
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", PEPPER)
    monkeypatch.delenv("EXTAPI_KIT_ACTIVITY_STORE", raising=False)
    monkeypatch.delenv("EXTAPI_KIT_USAGE_STORE", raising=False)
    return url


def _seed(url: str, key_id: str) -> None:
    async def go() -> None:
        act = KeyActivity(url)
        now = time.time()
        for status, ip, agent in (
            (200, "198.51.100.4", "sdk/1"),
            (200, "198.51.100.4", "sdk/1"),
            (403, "198.51.100.5", "curl/8\x1b[31m"),
        ):
            await act.write_batch(
                [
                    record(
                        key_id,
                        ip,
                        now,
                        status=status,
                        agent=agent,
                        rejection="ip-not-allowed" if status == 403 else None,
                    )
                ]
            )
        await act.aclose()

    asyncio.run(go())


def test_show_activity_prints_addresses_agents_and_refusals(
    keys_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text form lists IPs and agents with counts (escaped) and refusals by reason."""
    assert main(["keys", "create", "--name", "p", "--hasher", "hmac", "--json"]) == 0
    key_id = json.loads(capsys.readouterr().out)["id"]
    _seed(keys_url, key_id)
    assert main(["keys", "show", key_id, "--activity"]) == 0
    out = capsys.readouterr().out
    assert "requests             3 (2xx 2 3xx 0 4xx 1 5xx 0), error rate 33.3%" in out
    assert "refused              wrong-network 1" in out
    assert "198.51.100.4" in out and "198.51.100.5" in out
    assert "\x1b" not in out  # an agent's escape sequence is shown escaped (M11)
    assert main(["keys", "show", key_id, "--activity", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["activity"]["ips"][0] == {
        "ip": "198.51.100.4",
        "count": 2,
        "first_seen": data["activity"]["ips"][0]["first_seen"],
        "last_seen": data["activity"]["ips"][0]["last_seen"],
    }
    # Without --activity nothing is read or shown.
    assert main(["keys", "show", key_id]) == 0
    assert "error rate" not in capsys.readouterr().out
