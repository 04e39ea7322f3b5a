"""Admin API: list the token signing keys (public parts only) and rotate them."""

from __future__ import annotations

import json

import pytest

from extapi_kit.oauth import SigningKeys
from tests.admin.conftest import API, admin_setup

pytestmark = pytest.mark.anyio


async def test_list_and_rotate_signing_keys() -> None:
    """O6: with the admin scope, GET lists current and next keys with public JWKs only; POST
    rotate promotes next; the answers hold no private JWK member."""
    signing = SigningKeys(secret="q" * 40)
    async with admin_setup(signing=signing) as a:
        r = await a.client.get(f"{API}/oauth/signing-keys", headers=a.h)
        assert r.status_code == 200, r.text
        before = {k["state"]: k for k in r.json()["data"]}
        assert set(before) == {"current", "next"}
        for k in r.json()["data"]:
            assert set(k["public_jwk"]) == {"kty", "crv", "x", "kid", "alg", "use"}
        r = await a.client.post(
            f"{API}/oauth/signing-keys/rotate", json={"algorithm": "ES256"}, headers=a.h
        )
        assert r.status_code == 200, r.text
        after = {k["state"]: k for k in r.json()["data"]}
        assert after["current"]["kid"] == before["next"]["kid"]
        assert after["retired"]["kid"] == before["current"]["kid"]
        assert after["next"]["alg"] == "ES256"
        privates = [str(k._private["d"]) for k in await signing.keys()]
        text = json.dumps(r.json())
        assert not any(p in text for p in privates)
        r = await a.client.post(
            f"{API}/oauth/signing-keys/rotate", json={"algorithm": "HS256"}, headers=a.h
        )
        assert r.status_code == 422


async def test_signing_key_routes_need_the_admin_scope() -> None:
    """O6: a partner key (even '*') gets 403, no key 401; without signing= the routes are absent."""
    async with admin_setup(signing=SigningKeys()) as a:
        _, partner = await a.keys.create("p", scopes=["*"])
        for method, path in (
            ("GET", "/oauth/signing-keys"),
            ("POST", "/oauth/signing-keys/rotate"),
        ):
            r = await a.client.request(method, f"{API}{path}", headers={"X-API-Key": partner})
            assert r.status_code == 403
            r = await a.client.request(method, f"{API}{path}")
            assert r.status_code == 401
    async with admin_setup() as a:
        r = await a.client.get(f"{API}/oauth/signing-keys", headers=a.h)
        assert r.status_code == 404
