"""``extapi-kit keys create|update --scopes`` follows the one scope rule (issue 18 §4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from extapi_kit.cli import main
from extapi_kit.keys.service import KeyService


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    return url


def _scopes(url: str) -> dict[str, tuple[str, ...]]:
    async def read() -> dict[str, tuple[str, ...]]:
        svc = KeyService(url)
        try:
            return {r.name: r.scopes for r in (await svc.list())[0]}
        finally:
            await svc.aclose()

    return asyncio.run(read())


@pytest.mark.parametrize(
    "text",
    [
        "projects:read,projects:write",
        "projects:read projects:write",
        "projects:read, projects:write",
    ],
)
def test_cli_scopes_take_commas_spaces_or_both(
    store: str, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """G9: --scopes with commas, spaces or both stores the same scopes (spaces were refused)."""
    code = main(["keys", "create", "--name", "ci", "--scopes", text, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["scopes"] == ["projects:read", "projects:write"]
    assert _scopes(store) == {"ci": ("projects:read", "projects:write")}


def test_cli_refuses_an_upper_case_scope_with_a_hint(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """G9: --scopes PROJECTS:READ is refused (it would never match a route) with the rule and
    the lower-case spelling in the message; --help states the rule."""
    code = main(["keys", "create", "--name", "ci", "--scopes", "PROJECTS:READ"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "did you mean 'projects:read'?" in err and "commas or spaces" in err
    assert "lowercase" in err
    with pytest.raises(SystemExit):
        main(["keys", "create", "--help"])
    assert "commas or spaces" in " ".join(capsys.readouterr().out.split())
