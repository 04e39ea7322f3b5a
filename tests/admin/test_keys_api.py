"""The admin key routes: lifecycle, admin-scope protection, no secrets in listings, problems."""

from __future__ import annotations

import json

import pytest

from tests.admin.conftest import API, Admin

pytestmark = pytest.mark.anyio


async def test_create_list_show_update_rotate_revoke_flow(admin: Admin) -> None:
    """A key goes through create -> list -> show -> update -> rotate (grace) -> revoke over HTTP."""
    c, h = admin.client, admin.h
    r = await c.post(
        f"{API}/keys", json={"name": "partner", "scopes": ["projects:read"]}, headers=h
    )
    assert r.status_code == 201
    created = r.json()
    key_id, secret = created["key"]["id"], created["secret"]
    assert secret.startswith(created["key"]["display_prefix"])
    assert "shown once" in created["warning"]
    assert (await admin.keys.verify(secret)).key_id == key_id

    listed = (await c.get(f"{API}/keys", headers=h)).json()
    assert {k["id"] for k in listed["data"]} == {admin.admin_id, key_id}

    shown = (await c.get(f"{API}/keys/{key_id}", headers=h)).json()
    assert shown["status"] == "active" and shown["scopes"] == ["projects:read"]

    patch = {
        "name": "partner-2",
        "scopes": ["projects:read", "jobs:write"],
        "rate_limits": {"read": "50/minute"},
        "allowed_cidrs": ["203.0.113.0/24"],
        "grants": {"project": ["p1"]},
        "expires_at": "2099-01-01T00:00:00Z",
    }
    r = await c.patch(f"{API}/keys/{key_id}", json=patch, headers=h)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["name"] == "partner-2"
    assert updated["rate_limits"] == {"read": "50/minute"}
    assert updated["allowed_cidrs"] == ["203.0.113.0/24"]
    assert updated["grants"] == {"project": ["p1"]}
    assert updated["expires_at"] == "2099-01-01T00:00:00Z"
    assert updated["description"] == ""  # untouched fields keep their value

    r = await c.post(f"{API}/keys/{key_id}/rotate", json={"grace": "1h"}, headers=h)
    assert r.status_code == 201
    rotated = r.json()
    new_id, new_secret = rotated["key"]["id"], rotated["secret"]
    assert rotated["rotated_from"] == key_id and new_id != key_id
    assert rotated["key"]["scopes"] == ["projects:read", "jobs:write"]
    old = (await c.get(f"{API}/keys/{key_id}", headers=h)).json()
    assert old["status"] == "rotating" and old["rotated_to"] == new_id
    assert (await admin.keys.verify(secret)).key_id == key_id  # still valid during grace
    assert (await admin.keys.verify(new_secret)).key_id == new_id

    r = await c.post(f"{API}/keys/{new_id}/revoke", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    again = await c.post(f"{API}/keys/{new_id}/revoke", headers=h)
    assert again.json()["revoked_at"] == r.json()["revoked_at"]  # idempotent


async def test_non_admin_key_gets_403_and_no_key_gets_401(admin: Admin) -> None:
    """A valid key without the admin scope is refused with 403, a missing or bad key with 401."""
    _, secret = await admin.keys.create("plain", scopes=["projects:read"])
    r = await admin.client.get(f"{API}/keys", headers={"X-API-Key": secret})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "Insufficient scope"
    assert (await admin.client.get(f"{API}/keys")).status_code == 401
    bad = await admin.client.get(f"{API}/keys", headers={"X-API-Key": secret[:-4] + "AAAA"})
    assert bad.status_code == 401
    post = await admin.client.post(
        f"{API}/keys", json={"name": "x", "scopes": ["admin"]}, headers={"X-API-Key": secret}
    )
    assert post.status_code == 403  # a plain key cannot mint itself an admin key


async def test_no_secret_or_hash_in_list_show_update_or_revoke(admin: Admin) -> None:
    """Only the create and rotate answers carry the plaintext; no answer ever carries the hash."""
    c, h = admin.client, admin.h
    created = (await c.post(f"{API}/keys", json={"name": "s"}, headers=h)).json()
    secret, key_id = created["secret"], created["key"]["id"]
    stored_hash = (await admin.keys.get(key_id)).hash
    bodies = [
        (await c.get(f"{API}/keys", headers=h)).text,
        (await c.get(f"{API}/keys/{key_id}", headers=h)).text,
        (await c.patch(f"{API}/keys/{key_id}", json={"name": "t"}, headers=h)).text,
        (await c.post(f"{API}/keys/{key_id}/revoke", headers=h)).text,
    ]
    for body in bodies:
        assert secret not in body
        assert stored_hash not in body
        assert '"hash"' not in body
        assert admin.admin_key not in body
    assert '"hash"' not in json.dumps(created)


async def test_list_is_cursor_paginated_without_overlap(admin: Admin) -> None:
    """GET /keys pages with limit and next_cursor, and every key appears exactly once."""
    for i in range(5):
        await admin.keys.create(f"k{i}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await admin.client.get(f"{API}/keys", params=params, headers=admin.h)).json()
        pages += 1
        assert len(page["data"]) <= 2
        seen.extend(k["id"] for k in page["data"])
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert pages >= 3
    assert len(seen) == len(set(seen)) == 6


async def test_errors_are_problems(admin: Admin) -> None:
    """Unknown key 404, rotating a revoked key 409, bad values 422, unknown body fields 422."""
    c, h = admin.client, admin.h
    r = await c.get(f"{API}/keys/nope", headers=h)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem")
    rec, _ = await admin.keys.create("gone")
    await admin.keys.revoke(rec.id)
    r = await c.post(f"{API}/keys/{rec.id}/rotate", json={}, headers=h)
    assert r.status_code == 409 and "revoked" in r.json()["detail"]
    r = await c.post(f"{API}/keys", json={"name": "x", "allowed_cidrs": ["not-a-net"]}, headers=h)
    assert r.status_code == 422
    r = await c.post(f"{API}/keys", json={"name": "x", "hash": "injected"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "hash"]
    r = await c.get(f"{API}/keys", params={"limit": "0"}, headers=h)
    assert r.status_code == 422


async def test_openapi_lists_the_admin_routes(admin: Admin) -> None:
    """The admin API documents itself: /admin/v1/openapi.json names every key route."""
    doc = (await admin.client.get(f"{API}/openapi.json", headers=admin.h)).json()
    paths = set(doc["paths"])
    assert {
        f"{API}/keys",
        f"{API}/keys/{{key_id}}",
        f"{API}/keys/{{key_id}}/rotate",
        f"{API}/keys/{{key_id}}/revoke",
        f"{API}/keys/{{key_id}}/activity",
        f"{API}/audit",
    } <= paths
    assert not any(p.startswith(f"{API}/webhooks") for p in paths)  # no manager given


BAD_BODIES = [
    ('"quota":{"monthly":"x"}', "quota.monthly"),
    ('"quota":{"monthly":-5}', "quota.monthly"),
    ('"quota":{"monthly":1.5}', "quota.monthly"),
    ('"quota":{"monthly":true}', "quota.monthly"),
    ('"quota":{"monthly":1e999}', "quota.monthly"),
    ('"quota":{"hourly":5}', "quota.hourly"),
    ('"rate_limits":{"read":"1/0 seconds"}', "rate_limits.read"),
    ('"rate_limits":{"read":"1/minute;5/minute"}', "rate_limits.read"),
    ('"allowed_cidrs":["10.0.0.0/33"]', "allowed_cidrs"),
    ('"scopes":["two words"]', "scope"),
    ('"grants":{"projects":[]}', "grants.projects"),
    ('"metadata":{"x":1e999}', "metadata"),
]


@pytest.mark.parametrize(("fragment", "field"), BAD_BODIES)
async def test_key_settings_that_would_be_ignored_are_422(
    admin: Admin, fragment: str, field: str
) -> None:
    """M10: POST /keys and PATCH /keys/{id} refuse a quota, rate limit, network, scope, grant or
    metadata value that would be stored and ignored, with a 422 problem naming the field."""
    c = admin.client
    h = {**admin.h, "content-type": "application/json"}
    before = [k["id"] for k in (await c.get(f"{API}/keys", headers=admin.h)).json()["data"]]
    r = await c.post(f"{API}/keys", content='{"name":"k",' + fragment + "}", headers=h)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in r.text
    after = [k["id"] for k in (await c.get(f"{API}/keys", headers=admin.h)).json()["data"]]
    assert after == before
    r = await c.patch(f"{API}/keys/{admin.admin_id}", content="{" + fragment + "}", headers=h)
    assert r.status_code == 422 and field in r.text, r.text
    shown = (await c.get(f"{API}/keys/{admin.admin_id}", headers=admin.h)).json()
    assert shown["quota"] == {} and shown["rate_limits"] == {} and shown["metadata"] == {}
