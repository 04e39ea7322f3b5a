"""The admin API applies the keys feature's one scope rule (issue 18 §4)."""

from __future__ import annotations

import pytest

from tests.admin.conftest import API, Admin

pytestmark = pytest.mark.anyio


async def test_scopes_as_one_string_with_commas_or_spaces(admin: Admin) -> None:
    """G9: POST and PATCH /keys take scopes as a list or as one string separated by commas,
    spaces or both, and store the same scopes either way."""
    c, h = admin.client, admin.h
    made = await c.post(
        f"{API}/keys", json={"name": "a", "scopes": "projects:read, projects:write"}, headers=h
    )
    assert made.status_code == 201, made.text
    assert made.json()["key"]["scopes"] == ["projects:read", "projects:write"]
    key_id = made.json()["key"]["id"]
    patched = await c.patch(f"{API}/keys/{key_id}", json={"scopes": "jobs:read jobs:*"}, headers=h)
    assert patched.status_code == 200 and patched.json()["scopes"] == ["jobs:read", "jobs:*"]
    listed = await c.patch(f"{API}/keys/{key_id}", json={"scopes": ["jobs:read"]}, headers=h)
    assert listed.json()["scopes"] == ["jobs:read"]


@pytest.mark.parametrize(
    ("scopes", "hint"),
    [
        (["PROJECTS:READ"], "did you mean 'projects:read'?"),
        ("projects:read PROJECTS:WRITE", "did you mean 'projects:write'?"),
        (["a, b"], "one scope per item"),
    ],
)
async def test_a_bad_scope_is_a_422_naming_the_field_with_the_rule(
    admin: Admin, scopes: object, hint: str
) -> None:
    """G9: an upper-case scope (stored, it would never match a route) or two scopes in one list
    item is a 422 problem on body.scopes whose message gives the rule; nothing is created."""
    c, h = admin.client, admin.h
    r = await c.post(f"{API}/keys", json={"name": "bad", "scopes": scopes}, headers=h)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    (error,) = r.json()["errors"]
    assert error["loc"] == ["body", "scopes"]
    assert hint in error["msg"] and "commas or spaces" in error["msg"]
    assert "lowercase" in error["msg"]
    names = [k["name"] for k in (await c.get(f"{API}/keys", headers=h)).json()["data"]]
    assert "bad" not in names
