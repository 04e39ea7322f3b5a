"""``extapi-kit keys create/update --expires-in``: absurd expiries refused, nothing stored (M7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extapi_kit.cli import main


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    return url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--hasher", "hmac"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("absurd", ["99999999999999999d", "1e300", "9" * 400 + "s", "inf"])
def test_absurd_expires_in_is_refused_and_stores_nothing(
    store: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    absurd: str,
) -> None:
    """M7: keys create/update --expires-in with an absurd value exit 1 with one clear error line
    and store nothing (create) or change nothing (update)."""
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", "cli-test-pepper-0123456789")
    code, out, err = _run(capsys, "keys", "create", "--name", "x", "--expires-in", absurd)
    assert code == 1 and out == ""
    assert err.startswith("extapi-kit: error:") and "duration" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = _run(capsys, "keys", "list", "--json")
    assert code == 1 and "key store does not exist" in err  # nothing stored, not even a store
    code, out, _ = _run(capsys, "keys", "create", "--name", "ok", "--json")
    key_id = json.loads(out)["id"]
    code, out, err = _run(capsys, "keys", "update", key_id, "--expires-in", absurd)
    assert code == 1 and out == "" and "duration" in err
    code, out, _ = _run(capsys, "keys", "show", key_id, "--json")
    assert code == 0 and json.loads(out)["expires_at"] is None
