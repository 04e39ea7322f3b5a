"""``extapi-kit keys``: create/list/show/update/rotate/revoke in-process, and bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.cli import main
from extapi_kit.exceptions import InvalidKeyError
from extapi_kit.keys.hashing import HmacHasher
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_sqlite import SQLiteKeyStore

PEPPER = "cli-test-pepper-0123456789"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", PEPPER)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    return json.loads(out)


def verify(url: str, key: str, hasher: Any = None) -> str:
    async def go() -> str:
        store = SQLiteKeyStore.from_url(url)
        svc = KeyService(store, hasher=hasher)
        try:
            return (await svc.verify(key)).key_id
        finally:
            await store.aclose()

    return asyncio.run(go())


def test_create_prints_key_once_and_server_verifies_it(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """create prints the key on stdout, a warning on stderr; server-side argon2 accepts it."""
    code, out, err = run(capsys, "keys", "create", "--name", "ci", "--scopes", "read,write")
    assert code == 0
    key = out.strip()
    assert key.startswith("xk_live_") and "shown only once" in err and key not in err
    key_id = verify(store, key)  # default argon2id hasher, like ApiKeyMiddleware(store=url)
    code, out, _ = run(capsys, "keys", "show", key_id)
    assert code == 0 and key_id in out and key not in out


def test_create_json_fields(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """create --json gives id, key, name, env, scopes, created_at, expires_at, grants, limits."""
    data = run_json(
        capsys,
        "keys",
        "create",
        "--name",
        "svc",
        "--env",
        "test",
        "--owner",
        "team-7",
        "--scopes",
        "projects:read",
        "--expires-in",
        "30d",
        "--grant",
        "projects=7,9",
        "--grant",
        "orgs=*",
        "--rate-limit",
        "read=500/minute",
        "--cidrs",
        "10.0.0.0/8",
        "--hasher",
        "hmac",
    )
    assert {"id", "key", "name", "env", "scopes", "created_at", "expires_at"} <= data.keys()
    assert data["env"] == "test" and data["scopes"] == ["projects:read"]
    assert data["grants"] == {"projects": ["7", "9"], "orgs": ["*"]}
    assert data["rate_limits"] == {"read": "500/minute"} and data["expires_at"].endswith("Z")
    assert "hash" not in data
    assert verify(store, data["key"], HmacHasher(PEPPER)) == data["id"]


def test_list_update_rotate_revoke(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The full lifecycle through the CLI; rotation keeps the old key for its grace (A7)."""
    made = run_json(capsys, "keys", "create", "--name", "a", "--hasher", "hmac")
    listed = run_json(capsys, "keys", "list")
    assert [r["id"] for r in listed] == [made["id"]] and "hash" not in listed[0]
    code, out, _ = run(capsys, "keys", "list")
    assert code == 0 and made["id"] in out and "active" in out
    upd = run_json(
        capsys, "keys", "update", made["id"], "--name", "b", "--scopes", "x", "--expires-in", "1d"
    )
    assert upd["name"] == "b" and upd["scopes"] == ["x"] and upd["expires_at"]
    upd = run_json(capsys, "keys", "update", made["id"], "--no-expiry", "--cidrs", "")
    assert upd["expires_at"] is None and upd["allowed_cidrs"] == []
    rotated = run_json(capsys, "keys", "rotate", made["id"], "--grace", "24h", "--hasher", "hmac")
    assert rotated["rotated_from"] == made["id"] and rotated["key"] != made["key"]
    hasher = HmacHasher(PEPPER)
    assert verify(store, made["key"], hasher) == made["id"]
    assert verify(store, rotated["key"], hasher) == rotated["id"]
    code, out, _ = run(capsys, "keys", "revoke", made["id"])
    assert code == 0 and "revoked" in out
    with pytest.raises(InvalidKeyError):
        verify(store, made["key"], hasher)
    revoked = run_json(capsys, "keys", "list", "--status", "revoked")
    assert [r["id"] for r in revoked] == [made["id"]]


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "show", "doesnotexist"],
        ["keys", "create", "--name", "x", "--expires-in", "soon"],
        ["keys", "create", "--name", "x", "--grant", "projects"],
        ["keys", "create", "--name", "x", "--scopes", "BAD:scope"],
        ["keys", "create", "--name", "x", "--env", "PROD"],
        ["keys", "create", "--name", "x", "--cidrs", "10.0.0.999/8"],
        ["keys", "create", "--name", "x", "--rate-limit", "read=often"],
        ["keys", "rotate", "doesnotexist"],
        ["keys", "update", "doesnotexist"],
        ["keys", "list", "--store", "ftp://nowhere"],
    ],
)
def test_bad_input_exits_non_zero(
    store: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Bad input prints one error line on stderr and exits non-zero."""
    code, out, err = run(capsys, *argv, "--hasher", "hmac")
    assert code != 0 and err.startswith("extapi-kit: error:") and out == ""


def test_hmac_without_pepper_and_usage_errors(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--hasher hmac without $EXTAPI_KIT_PEPPER fails; a missing --name is a usage error."""
    monkeypatch.delenv("EXTAPI_KIT_PEPPER")
    code, _, err = run(capsys, "keys", "create", "--name", "x", "--hasher", "hmac")
    assert code == 1 and "EXTAPI_KIT_PEPPER" in err
    with pytest.raises(SystemExit) as info:
        main(["keys", "create"])
    assert info.value.code == 2


def test_default_store_is_sqlite_in_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --store or $EXTAPI_KIT_STORE keys go to ./extapi-kit.db."""
    monkeypatch.delenv("EXTAPI_KIT_STORE", raising=False)
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", PEPPER)
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "keys", "create", "--name", "d", "--hasher", "hmac")[0] == 0
    assert (tmp_path / "extapi-kit.db").exists()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--rate-limit", "read=1/0 seconds"], "rate_limits.read"),
        (["--rate-limit", "read=1/minute;3/minute"], "rate_limits.read"),
        (["--quota", "monthly=x"], "quota.monthly"),
        (["--quota", "monthly=-5"], "quota.monthly"),
        (["--quota", "monthly=1.5"], "quota.monthly"),
        (["--quota", "hourly=5"], "quota.hourly"),
        (["--cidrs", "10.0.0.0/33"], "allowed_cidrs"),
        (["--grant", "bad type!=1"], "grants"),
        (["--scopes", "Projects:read"], "scope"),  # "a b" is two scopes (issue 18 §4)
    ],
)
def test_settings_that_would_be_ignored_are_refused(
    store: str, capsys: pytest.CaptureFixture[str], options: list[str], field: str
) -> None:
    """M10: keys create/update refuse a setting that would be stored and ignored, naming the
    field on stderr (exit 1), and store nothing; a valid --quota is stored."""
    code, out, err = run(capsys, "keys", "create", "--name", "x", *options)
    assert code == 1 and out == "" and field in err, err
    code, _, err = run(capsys, "keys", "list")  # nothing stored, not even an empty store
    assert code == 1 and "key store does not exist" in err
    created = run_json(capsys, "keys", "create", "--name", "x", "--quota", "monthly=100")
    assert created["quota"] == {"monthly": 100}
    code, out, err = run(capsys, "keys", "update", created["id"], *options)
    assert code == 1 and field in err, err
    shown = run_json(capsys, "keys", "show", created["id"])
    assert shown["quota"] == {"monthly": 100} and shown["rate_limits"] == {}
