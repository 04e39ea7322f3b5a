"""The admin API's plan routes: manage plans, assign keys and owners, 422/409 problems (K4)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from extapi_kit.admin import admin_app
from extapi_kit.keys.service import KeyService
from extapi_kit.plans import PlanService
from tests.admin.conftest import asgi_client
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio
API = "/admin/v1"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    plans = PlanService("memory://")
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0, plans=plans)
    _, secret = await keys.create("root", scopes=["admin", "*"])
    async with asgi_client(admin_app(keys=keys)) as c:
        c.headers["X-API-Key"] = secret
        yield c
    await keys.aclose()


async def test_create_list_show_update_delete_a_plan(client: httpx.AsyncClient) -> None:
    """Plans are created (201), listed, shown with their owners and policy names, changed
    (only the fields sent) and deleted (204)."""
    body = {"name": "pro", "rate_limits": {"read": "1000/minute"}, "scopes": ["projects:*"]}
    r = await client.post(f"{API}/plans", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["policy_names"] == {"read": "pro.read"}
    r = await client.patch(f"{API}/plans/pro", json={"quota": {"monthly": 5000}})
    assert r.status_code == 200, r.text
    assert r.json()["rate_limits"] == {"read": "1000/minute"}
    assert r.json()["quota"] == {"monthly": 5000}
    r = await client.put(f"{API}/owners/acme/plan", json={"plan": "pro"})
    assert r.json() == {"owner": "acme", "plan": "pro"}
    r = await client.get(f"{API}/plans/pro")
    assert r.json()["owners"] == ["acme"]
    assert [p["name"] for p in (await client.get(f"{API}/plans")).json()["data"]] == ["pro"]
    assert (await client.get(f"{API}/owners/acme/plan")).json()["plan"] == "pro"
    await client.put(f"{API}/owners/acme/plan", json={"plan": None})
    assert (await client.delete(f"{API}/plans/pro")).status_code == 204
    assert (await client.get(f"{API}/plans/pro")).status_code == 404


async def test_unknown_plan_is_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    """K4: a key created or changed onto an unknown plan, or an owner assigned one, gets a 422
    problem whose errors name the ``plan`` field; nothing is stored."""
    r = await client.post(f"{API}/keys", json={"name": "k", "plan": "gold"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["body", "plan"]
    assert "gold" in r.json()["detail"]
    r = await client.put(f"{API}/owners/acme/plan", json={"plan": "gold"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "plan"]
    listed = (await client.get(f"{API}/keys")).json()["data"]
    assert [k["name"] for k in listed] == ["root"]


async def test_deleting_a_plan_in_use_is_a_409(client: httpx.AsyncClient) -> None:
    """K4: deleting a plan a key is on answers 409 problem naming the key; the plan stays."""
    await client.post(f"{API}/plans", json={"name": "free"})
    r = await client.post(f"{API}/keys", json={"name": "k", "plan": "free"})
    assert r.status_code == 201, r.text
    key_id = r.json()["key"]["id"]
    assert r.json()["key"]["plan"] == "free"
    r = await client.delete(f"{API}/plans/free")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert key_id in r.json()["detail"]
    assert (await client.get(f"{API}/plans/free")).status_code == 200
    r = await client.patch(f"{API}/keys/{key_id}", json={"plan": None})
    assert r.status_code == 200 and r.json()["plan"] is None
    assert (await client.delete(f"{API}/plans/free")).status_code == 204


async def test_scope_beyond_ceiling_is_a_422_naming_scopes(client: httpx.AsyncClient) -> None:
    """K3: the admin API refuses a key on a plan holding a scope beyond the plan's ceiling."""
    await client.post(f"{API}/plans", json={"name": "free", "scopes": ["projects:read"]})
    r = await client.post(
        f"{API}/keys", json={"name": "k", "plan": "free", "scopes": ["projects:write"]}
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("scopes:")
