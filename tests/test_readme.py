"""The README's quickstart runs as written: a protected, rate-limited, audited endpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from extapi_kit.cli import main as cli_main

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python[^\n]*\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.anyio
async def test_readme_quickstart_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart app answers 401 without a key and 200 with one made by the CLI (A1)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)
    app = namespace["app"]

    argv = ["keys", "create", "--name", "partner-acme", "--scopes", "projects:read"]
    argv += ["--store", "sqlite:///keys.db", "--json"]
    status = await anyio.to_thread.run_sync(cli_main, argv)
    assert status == 0
    key = json.loads(capsys.readouterr().out)["key"]

    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        denied = await client.get("/projects")
        allowed = await client.get("/projects", headers={"X-API-Key": key})
    assert denied.status_code == 401
    assert denied.headers["content-type"] == "application/problem+json"
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {"owner": None, "items": []}
    assert "ratelimit" in allowed.headers
