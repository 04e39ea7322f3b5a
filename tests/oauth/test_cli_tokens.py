"""``extapi-kit tokens``: issue a token for a key; list and rotate the signing keys."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from extapi_kit.cli import main
from extapi_kit.oauth import SigningKeys

SECRET = "cli-signing-secret-0123456789-abcdef"
ISSUER = "https://api.example.test"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.setenv("EXTAPI_KIT_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("EXTAPI_KIT_ISSUER", ISSUER)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _jwks(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        signing = SigningKeys(url, secret=SECRET)
        try:
            return await signing.jwks()
        finally:
            await signing.aclose()

    return asyncio.run(go())


def _create_key(capsys: pytest.CaptureFixture[str], *scopes: str) -> str:
    code, out, _ = run(capsys, "keys", "create", "--name", "cli", "--scopes", ",".join(scopes))
    assert code == 0
    return out.strip()


def test_issue_prints_a_token_pyjwt_verifies(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tokens issue --key`` prints a token signed by the stored current key, narrowed by
    --scope; --json prints the RFC 6749 response."""
    key = _create_key(capsys, "projects:read", "projects:write")
    code, out, err = run(capsys, "tokens", "issue", "--key", key, "--scope", "projects:read")
    assert code == 0, err
    token = out.strip()
    assert "expires in 900 s" in err and key not in out + err
    jwk = pyjwt.PyJWKSet.from_dict(_jwks(store))[pyjwt.get_unverified_header(token)["kid"]]
    claims = pyjwt.decode(token, jwk.key, algorithms=["EdDSA"], audience=ISSUER)
    assert claims["scope"] == "projects:read"
    code, out, _ = run(capsys, "tokens", "issue", "--key", key, "--json", "--lifetime", "2m")
    assert code == 0
    assert json.loads(out)["expires_in"] == 120


def test_issue_reads_the_key_from_stdin_and_refuses_a_bad_one(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--key -`` reads stdin; a wrong key exits 1 with invalid_client and never echoes it."""
    key = _create_key(capsys, "a")
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    code, out, _ = run(capsys, "tokens", "issue", "--key", "-")
    assert code == 0 and out.count(".") == 2
    code, out, err = run(capsys, "tokens", "issue", "--key", key + "x")
    assert code == 1 and "invalid_client" in err and key not in err


def test_signing_keys_list_and_rotate(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """list shows current and next (public parts only); rotate promotes next; ES256 on request."""
    key = _create_key(capsys, "a")
    assert run(capsys, "tokens", "issue", "--key", key)[0] == 0
    code, out, _ = run(capsys, "tokens", "signing-keys", "list", "--json")
    assert code == 0
    before = {k["state"]: k for k in json.loads(out)}
    assert set(before) == {"current", "next"}
    assert '"d"' not in out and SECRET not in out
    code, out, _ = run(capsys, "tokens", "signing-keys", "rotate", "--algorithm", "ES256")
    assert code == 0
    assert "current" in out and "retired" in out and "ES256" in out
    code, out, _ = run(capsys, "tokens", "signing-keys", "list", "--json")
    after = {k["state"]: k for k in json.loads(out)}
    assert after["current"]["kid"] == before["next"]["kid"]
    assert after["retired"]["kid"] == before["current"]["kid"]
    assert after["next"]["alg"] == "ES256"


def test_missing_secret_and_missing_store_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without $EXTAPI_KIT_SIGNING_SECRET a database store is refused; ``list`` never creates a
    missing SQLite file."""
    monkeypatch.delenv("EXTAPI_KIT_SIGNING_SECRET", raising=False)
    url = f"sqlite:///{tmp_path}/nothing.db"
    code, _, err = run(capsys, "tokens", "signing-keys", "rotate", "--store", url)
    assert code == 1 and "secret" in err
    monkeypatch.setenv("EXTAPI_KIT_SIGNING_SECRET", SECRET)
    code, _, err = run(capsys, "tokens", "signing-keys", "list", "--store", url)
    assert code == 1 and "does not exist" in err
    assert not (tmp_path / "nothing.db").exists()
