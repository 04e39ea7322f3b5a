"""The studio composition in process: CORS, health, OpenAPI scopes, the demo command's edges."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx
import pytest

from extapi_kit.cli import main as cli_main
from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.examples.studio.demo import ADMIN_SCOPES, _banner, bootstrap_admin_key
from extapi_kit.keys.service import KeyService


@pytest.mark.anyio
async def test_cors_preflight_only_for_the_configured_origin(tmp_path: Path) -> None:
    """CORS sits outside the stack: the configured origin's preflight passes without a key,
    another origin's is refused; /health is public and names the backend."""
    app = create_app(tmp_path / "d", cors_origins=("https://partner.example",))
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with run_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        pre = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        }
        ok = await c.options("/api/v1/jobs", headers={"Origin": "https://partner.example", **pre})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://partner.example"
        bad = await c.options("/api/v1/jobs", headers={"Origin": "https://evil.example", **pre})
        assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
        health = (await c.get("/health")).json()
        assert health["status"] == "ok" and health["backend"] == "sqlite"
        doc = (await c.get("/api/v1/openapi.json")).json()
    scopes = {
        op["x-required-scopes"][0]
        for path in doc["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and op.get("x-required-scopes")
    }
    assert scopes == set(ADMIN_SCOPES) - {"admin"}


@pytest.mark.anyio
async def test_bootstrap_key_is_new_on_every_start_and_the_old_one_revoked(tmp_path: Path) -> None:
    """The bootstrap admin key is shown once: a restart revokes the old key and makes a new one,
    keeping only the id on disk."""
    url = store_urls(tmp_path)["keys"]
    first_id, first_key, revoked = await bootstrap_admin_key(tmp_path, url)
    second_id, second_key, revoked_again = await bootstrap_admin_key(tmp_path, url)
    assert revoked is None and revoked_again == first_id and first_key != second_key
    assert (tmp_path / "admin-key.id").read_text().strip() == second_id
    assert second_key not in (tmp_path / "admin-key.id").read_text()
    svc = KeyService(url)
    try:
        assert (await svc.get(first_id)).revoked_at is not None
        assert set((await svc.get(second_id)).scopes) == set(ADMIN_SCOPES)
    finally:
        await svc.aclose()
    args = argparse.Namespace(
        host="127.0.0.1", port=8000, data_dir=str(tmp_path), redis=None, workers=1
    )
    banner = _banner(args, second_id, second_key, first_id)
    assert second_key in banner and "/api/v1" in banner and f"previous {first_id} revoked" in banner


def test_banner_hides_a_store_password(tmp_path: Path) -> None:
    """A10: a Redis URL with a password is shown with ``***`` in the banner's store line and in its
    commands, with a line saying so; the password itself never reaches the terminal."""
    args = argparse.Namespace(
        host="127.0.0.1",
        port=8000,
        data_dir=str(tmp_path),
        redis="redis://app:s3cret-pw@127.0.0.1:6390/0",
        workers=2,
    )
    banner = _banner(args, "kid", "xk_test_key", None)
    assert "s3cret-pw" not in banner
    assert "redis://app:***@127.0.0.1:6390/0" in banner
    assert "put it back before running them" in banner
    plain = _banner(
        argparse.Namespace(**{**vars(args), "redis": "redis://127.0.0.1:6390/0"}), "k", "x", None
    )
    assert "***" not in plain and "redis://127.0.0.1:6390/0" in plain


def test_demo_without_uvicorn_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """G13: the example ships in the package, so only a missing server is an error: `demo`
    without uvicorn exits 1 and names the `[server]` extra."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert cli_main(["demo"]) == 1
    assert 'pip install "extapi-kit[server]"' in capsys.readouterr().err


@pytest.mark.anyio
async def test_project_scoped_key_sees_only_its_projects(tmp_path: Path) -> None:
    """Z3: a key granted projects 3 and 7 lists only those, gets the missing-resource 404 for
    any other project (reads and job submission alike), and works on its own projects."""
    data = tmp_path / "d"
    app = create_app(data)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with run_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        svc = KeyService(store_urls(data)["keys"])
        try:
            _, key = await svc.create(
                "partner",
                scopes=["projects:read", "jobs:write"],
                grants={"projects": ["3", "7"]},
            )
        finally:
            await svc.aclose()
        h = {"X-API-Key": key}
        listed = (await c.get("/api/v1/projects?limit=100", headers=h)).json()
        assert {p["id"] for p in listed["data"]} == {3, 7} and not listed["has_more"]
        assert (await c.get("/api/v1/projects/7", headers=h)).status_code == 200
        foreign = await c.get("/api/v1/projects/5", headers=h)
        missing = await c.get("/api/v1/projects/99999", headers=h)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()
        assert (await c.get("/api/v1/projects/5/assets", headers=h)).status_code == 404
        job = {"model": "sdxl", "prompt": "a fox"}
        bad = await c.post("/api/v1/jobs", headers=h, json={**job, "project_id": 5})
        good = await c.post("/api/v1/jobs", headers=h, json={**job, "project_id": 7})
        assert bad.status_code == 404 and good.status_code == 201


@pytest.mark.anyio
async def test_list_cursors_are_bound_to_their_route_and_key(tmp_path: Path) -> None:
    """M8: a cursor from /api/v1/models is a 400 problem on /api/v1/projects/1/assets and on
    /api/v1/projects (never a 500), as is one from another project's assets or another key;
    the same route and key still page."""
    data = tmp_path / "d"
    app = create_app(data)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with run_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        svc = KeyService(store_urls(data)["keys"])
        try:
            _, key = await svc.create("partner", scopes=["projects:read", "models:read"])
            _, other = await svc.create("other", scopes=["projects:read", "models:read"])
        finally:
            await svc.aclose()
        h = {"X-API-Key": key}
        models = (await c.get("/api/v1/models?limit=1", headers=h)).json()
        assets = (await c.get("/api/v1/projects/1/assets?limit=1", headers=h)).json()
        projects = (await c.get("/api/v1/projects?limit=1", headers=h)).json()
        cursors = {
            "models": models["next_cursor"],
            "assets1": assets["next_cursor"],
            "projects": projects["next_cursor"],
        }
        assert all(cursors.values())
        misuse = [
            ("/api/v1/projects/1/assets", "models"),
            ("/api/v1/projects", "models"),
            ("/api/v1/models", "projects"),
            ("/api/v1/projects/2/assets", "assets1"),
            ("/api/v1/projects/1/assets", "projects"),
        ]
        for path, source in misuse:
            r = await c.get(path, params={"limit": "1", "cursor": cursors[source]}, headers=h)
            assert r.status_code == 400, (path, source, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"].endswith("/bad-request")
        foreign = await c.get(
            "/api/v1/models",
            params={"limit": "1", "cursor": cursors["models"]},
            headers={"X-API-Key": other},
        )
        assert foreign.status_code == 400
        for path, source in [
            ("/api/v1/models", "models"),
            ("/api/v1/projects/1/assets", "assets1"),
            ("/api/v1/projects", "projects"),
        ]:
            ok = await c.get(path, params={"limit": "1", "cursor": cursors[source]}, headers=h)
            assert ok.status_code == 200 and len(ok.json()["data"]) == 1, ok.text
