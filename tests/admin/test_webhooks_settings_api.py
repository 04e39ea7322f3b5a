"""Webhook settings out of bounds are 422 problems naming the field (W14, M10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from extapi_kit.webhooks import WebhookManager
from extapi_kit.webhooks.store_memory import MemoryWebhookStore
from tests.admin.conftest import API, Admin, admin_setup

pytestmark = pytest.mark.anyio
EPS = f"{API}/webhooks/endpoints"


@pytest.fixture
async def wh() -> AsyncIterator[tuple[Admin, WebhookManager]]:
    """An admin app with a WebhookManager on a memory store."""
    manager = WebhookManager(MemoryWebhookStore())
    async with admin_setup(webhooks=manager) as admin:
        yield admin, manager


def _fields(body: dict[str, Any]) -> list[str]:
    return [e["loc"][-1] for e in body.get("errors", [])]


@pytest.mark.parametrize("port", ["99999", "0"])
async def test_bad_port_is_422_naming_url(wh: tuple[Admin, WebhookManager], port: str) -> None:
    """W14: add and update refuse a URL whose port no socket accepts, naming the url field."""
    admin, manager = wh
    c, h = admin.client, admin.h
    url = f"http://93.184.216.34:{port}/hook"
    r = await c.post(EPS, json={"url": url}, headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert _fields(r.json()) == ["url"] and "port" in r.text
    ep = (await c.post(EPS, json={"url": "https://example.com/h"}, headers=h)).json()["endpoint"]
    r = await c.patch(f"{EPS}/{ep['id']}", json={"url": url}, headers=h)
    assert r.status_code == 422 and _fields(r.json()) == ["url"]
    assert [e.url for e in await manager.list_endpoints()] == ["https://example.com/h"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate_limit", "inf"), ("rate_limit", 1e308), ("rate_limit", 1e-300),
     ("max_concurrency", 10**12)],
)  # fmt: skip
async def test_unbounded_endpoint_settings_are_422(
    wh: tuple[Admin, WebhookManager], field: str, value: Any
) -> None:
    """M10: rate_limit "inf"/1e308 and a huge max_concurrency are 422s naming the field."""
    admin, manager = wh
    c, h = admin.client, admin.h
    r = await c.post(EPS, json={"url": "https://example.com/a", field: value}, headers=h)
    assert r.status_code == 422, r.text
    assert _fields(r.json()) == [field]
    ep = (await c.post(EPS, json={"url": "https://example.com/b"}, headers=h)).json()["endpoint"]
    r = await c.patch(f"{EPS}/{ep['id']}", json={field: value}, headers=h)
    assert r.status_code == 422 and _fields(r.json()) == [field]
    assert (await manager.get_endpoint(ep["id"])).rate_limit is None


@pytest.mark.parametrize("grace", [1e308, "1e308", "inf", "400d", -1])
async def test_rotation_grace_is_bounded(wh: tuple[Admin, WebhookManager], grace: Any) -> None:
    """M10: rotate-secret with grace 1e308 (old secrets never expire) is a 422 naming grace."""
    admin, manager = wh
    c, h = admin.client, admin.h
    ep = (await c.post(EPS, json={"url": "https://example.com/h"}, headers=h)).json()["endpoint"]
    r = await c.post(f"{EPS}/{ep['id']}/rotate-secret", json={"grace": grace}, headers=h)
    assert r.status_code == 422, r.text
    assert _fields(r.json()) == ["grace"] and "whsec_" not in r.text
    assert len((await manager.get_endpoint(ep["id"])).secrets) == 1
    ok = await c.post(f"{EPS}/{ep['id']}/rotate-secret", json={"grace": "30d"}, headers=h)
    assert ok.status_code == 200, ok.text
