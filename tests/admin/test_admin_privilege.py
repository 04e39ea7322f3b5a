"""Reserved admin scopes and no privilege escalation through the admin API (case A14)."""

from __future__ import annotations

import pytest

from extapi_kit.admin import admin_app
from extapi_kit.audit.sink_memory import MemorySink
from extapi_kit.context import has_scope, is_reserved_scope
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.testing import FakeClock
from tests.admin.conftest import API, Admin, admin_setup, asgi_client, make_keys

pytestmark = pytest.mark.anyio


def test_wildcards_never_grant_reserved_scopes() -> None:
    """A14: '*' and 'x:*' cover ordinary scopes but never 'admin' or anything under 'admin:'."""
    assert has_scope(frozenset({"*"}), "projects:read")
    assert has_scope(frozenset({"projects:*"}), "projects:write")
    for granted in ("*", "admin:*", "ops:*"):
        for reserved in ("admin", "admin:keys", "ops:admin"):
            assert is_reserved_scope(reserved)
            assert not has_scope(frozenset({granted}), reserved), (granted, reserved)
    assert has_scope(frozenset({"admin"}), "admin")
    assert has_scope(frozenset({"admin:keys"}), "admin:keys")
    assert not has_scope(frozenset({"admin"}), "admin:keys")
    assert not is_reserved_scope("projects:read") and not is_reserved_scope("administrators")


async def test_full_access_keys_never_pass_the_admin_api(admin: Admin) -> None:
    """A14: a partner key with scopes ['*'] (or 'admin:*') gets 403 on every admin route."""
    c = admin.client
    for scopes in (["*"], ["admin:*"], ["*", "admin:*", "projects:*"]):
        _, secret = await admin.keys.create("partner", owner="acme", scopes=scopes)
        h = {"X-API-Key": secret}
        assert (await c.get(f"{API}/keys", headers=h)).status_code == 403
        assert (await c.get(f"{API}/audit", headers=h)).status_code == 403
        r = await c.post(f"{API}/keys", json={"name": "x", "scopes": ["*"]}, headers=h)
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
    assert (await c.get(f"{API}/keys", headers=admin.h)).status_code == 200


async def test_custom_admin_scope_is_reserved_too() -> None:
    """A14: 'ops:*' does not pass an admin API guarded by 'ops:admin'; a scope that a wildcard
    could grant is refused as the admin scope."""
    async with admin_setup(admin_scope="ops:admin", prefix="/ops") as a:
        _, secret = await a.keys.create("p", scopes=["ops:*", "*"])
        r = await a.client.get("/ops/v1/keys", headers={"X-API-Key": secret})
        assert r.status_code == 403
    for scope in ("ops", "ops:write", "keys:manage"):
        with pytest.raises(ConfigurationError, match="reserved"):
            admin_app(keys=make_keys(), audit=MemorySink(), admin_scope=scope)


async def test_admin_api_never_mints_more_than_the_calling_key() -> None:
    """A14: a key created, updated or rotated through the admin API never holds more scopes,
    grants, networks or lifetime than the calling key; within those it is accepted."""
    clock = FakeClock(1_800_000_000.0)
    keys = make_keys()
    root, _ = await keys.create("root", scopes=["admin"])
    # About 30 writes with one key, more than build()'s default 20/minute: limits are not tested.
    off = {"rate_limit_storage": None}
    app = admin_app(keys=keys, audit=MemorySink(), clock=clock, build_options=off)
    _, secret = await keys.create(
        "limited-admin",
        scopes=["admin", "projects:read", "jobs:*"],
        grants={"projects": ["1", "2"], "orgs": ["*"]},
        allowed_cidrs=["203.0.113.0/24"],
        expires_at=1_900_000_000.0,
    )
    h = {"X-API-Key": secret}
    ok = {
        "name": "child",
        "scopes": ["projects:read", "jobs:read"],
        "grants": {"projects": ["1"]},
        "allowed_cidrs": ["203.0.113.7/32"],
        "expires_at": "2029-01-01T00:00:00Z",
    }
    too_much: list[dict[str, object]] = [
        {"scopes": ["projects:read", "projects:write"]},  # a scope it lacks
        {"scopes": ["*"]},  # a wildcard wider than its own
        {"scopes": ["projects:*"]},
        {"scopes": ["admin", "projects:read"], "grants": None},  # no grants = every project
        {"grants": None},
        {"grants": {"projects": ["1", "3"]}},  # a project it lacks
        {"grants": {"projects": ["*"]}},
        {"grants": {"orgs": ["a"]}},  # unrestricted on projects
        {"allowed_cidrs": None},  # from anywhere
        {"allowed_cidrs": ["198.51.100.0/24"]},
        {"allowed_cidrs": ["203.0.0.0/16"]},
        {"expires_at": None},  # outlives the caller
        {"expires_at": "2099-01-01T00:00:00Z"},
    ]
    async with asgi_client(app) as c:
        for change in too_much:
            r = await c.post(f"{API}/keys", json={**ok, **change}, headers=h)
            assert r.status_code == 403, (change, r.text)
            assert r.json()["type"].endswith("/forbidden"), r.text
        r = await c.post(f"{API}/keys", json=ok, headers=h)
        assert r.status_code == 201, r.text
        child = r.json()["key"]["id"]
        # Updates: the result must stay within the caller, for another key and for itself.
        for change in too_much:
            body = {k: v for k, v in change.items() if k != "name"}
            r = await c.patch(f"{API}/keys/{child}", json=body, headers=h)
            assert r.status_code == 403, (change, r.text)
        r = await c.patch(f"{API}/keys/{child}", json={"name": "renamed"}, headers=h)
        assert r.status_code == 200, r.text
        me = (await c.get(f"{API}/keys?limit=200", headers=h)).json()["data"]
        my_id = next(k["id"] for k in me if k["name"] == "limited-admin")
        r = await c.patch(f"{API}/keys/{my_id}", json={"grants": None}, headers=h)
        assert r.status_code == 403, r.text
        # Rotation hands out a new secret: only for keys within the caller.
        assert (await c.post(f"{API}/keys/{root.id}/rotate", json={}, headers=h)).status_code == 403
        r = await c.post(f"{API}/keys/{child}/rotate", json={}, headers=h)
        assert r.status_code == 201, r.text
    stored = await keys.get(root.id)
    assert stored.rotated_to is None and set(stored.scopes) == {"admin"}
    await keys.aclose()
