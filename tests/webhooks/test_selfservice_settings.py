"""Self-service webhook registration refuses URLs whose port no socket accepts (W14)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.keys.service import KeyService

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("port", ["99999", "0"])
async def test_self_service_bad_port_is_422_naming_url(tmp_path: Path, port: str) -> None:
    """W14: a partner registering http://93.184.216.34:99999/hook (or port 0) through the public
    API gets a 422 problem naming the url field, and no endpoint is stored."""
    data = tmp_path / "d"
    app = create_app(data)
    svc = KeyService(store_urls(data)["keys"])
    try:
        _, partner = await svc.create("p", owner="p", scopes=["webhooks:read", "webhooks:write"])
    finally:
        await svc.aclose()
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    h = {"X-API-Key": partner}
    async with run_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        url = f"http://93.184.216.34:{port}/hook"
        r = await c.post("/api/v1/webhooks/endpoints", headers=h, json={"url": url})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["loc"] for e in r.json()["errors"]] == [["body", "url"]]
        assert "port" in r.text
        listed = await c.get("/api/v1/webhooks/endpoints", headers=h)
        assert listed.status_code == 200 and listed.json()["data"] == []
