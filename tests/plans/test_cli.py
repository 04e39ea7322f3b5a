"""``extapi-kit plans ...`` and ``keys create|update --plan``, output checked as printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extapi_kit.cli import main


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.delenv("EXTAPI_KIT_PLANS_STORE", raising=False)
    return url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plans_create_list_update_show(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Plans are created, listed as a table, changed and shown with their owners."""
    code, out, err = _run(
        capsys, "plans", "create", "free", "--rate-limit", "read=60/minute", "--quota",
        "daily=1000", "--scopes", "projects:read",
    )  # fmt: skip
    assert code == 0, err
    assert 'rate_limits    {"read": "60/minute"}' in out
    assert _run(capsys, "plans", "create", "pro", "--rate-limit", "read=1000/minute")[0] == 0
    code, out, _ = _run(capsys, "plans", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "RATE", "LIMITS", "QUOTA", "SCOPE", "CEILING"]
    assert lines[1].split() == ["free", "read=60/minute", "daily=1000", "projects:read"]
    assert lines[2].split() == ["pro", "read=1000/minute", "-", "(none)"]
    assert _run(capsys, "plans", "update", "free", "--quota", "daily=500")[0] == 0
    assert _run(capsys, "plans", "assign", "--owner", "acme", "free")[1] == (
        "owner acme is on plan free\n"
    )
    code, out, _ = _run(capsys, "plans", "show", "free", "--json")
    data = json.loads(out)
    assert data["quota"] == {"daily": 500} and data["owners"] == ["acme"]
    assert data["policy_names"] == {"read": "free.read"}


def test_keys_plan_assignment_and_errors(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """K4: ``keys create --plan`` stores the plan; an unknown plan and deleting a plan in use
    exit 1 with a one-line message naming the field or the key; ``--no-plan`` frees it."""
    assert _run(capsys, "plans", "create", "free")[0] == 0
    code, out, err = _run(capsys, "keys", "create", "--name", "ci", "--plan", "free", "--json")
    assert code == 0, err
    key_id = json.loads(out)["id"]
    assert json.loads(out)["plan"] == "free"
    code, _, err = _run(capsys, "keys", "create", "--name", "x", "--plan", "gold")
    assert code == 1 and err == "extapi-kit: error: plan: unknown plan 'gold'\n"
    code, _, err = _run(capsys, "plans", "delete", "free")
    assert code == 1 and f"key:{key_id}" in err
    code, out, _ = _run(capsys, "keys", "update", key_id, "--no-plan", "--json")
    assert code == 0 and json.loads(out)["plan"] is None
    assert _run(capsys, "plans", "delete", "free")[1] == "deleted plan free\n"


def test_read_only_plan_commands_never_create_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``plans list`` on a SQLite file that does not exist is refused; no file appears."""
    url = f"sqlite:///{tmp_path}/typo.db"
    code, _, err = _run(capsys, "plans", "list", "--store", url)
    assert code == 1 and "plan store does not exist" in err
    assert not (tmp_path / "typo.db").exists()
