"""``extapi-kit openapi`` prints the external OpenAPI document (the example's, or --app's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from extapi_kit.cli import main


def test_prints_the_example_document(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --app the studio's /api/v1 is printed and no internal-only path is in it (Z4)."""
    assert main(["openapi"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/projects" in doc["paths"]
    assert not any("users" in p or "billing" in p for p in doc["paths"])


def test_app_option_loads_a_user_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--app module:attr prints that API's document; a bad spec is a clear error, exit 1."""
    (tmp_path / "myapi_for_cli.py").write_text(
        "from extapi_kit import ExternalAPI\n"
        "api = ExternalAPI(title='Mine', version='2.0.0')\n"
        "@api.get('/things', scopes=['things:read'])\n"
        "def things(req):\n"
        "    return {'items': []}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["openapi", "--app", "myapi_for_cli:api"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["info"]["title"] == "Mine"
    assert any(p.endswith("/things") for p in doc["paths"])
    sys.modules.pop("myapi_for_cli", None)
    assert main(["openapi", "--app", "nope"]) == 1
    assert main(["openapi", "--app", "missing_module_x:api"]) == 1
    err = capsys.readouterr().err
    assert "--app must look like" in err and "cannot load" in err


def test_keys_usage_is_reachable(capsys: pytest.CaptureFixture[str]) -> None:
    """`extapi-kit keys usage --help` exists (usage lives under the keys group too)."""
    with pytest.raises(SystemExit) as exc:
        main(["keys", "usage", "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out
