"""POST /oauth/token, the JWKS and the metadata, served by the built stack under uvicorn."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from extapi_kit.keys.service import KeyService
from extapi_kit.oauth import SigningKeys, TokenIssuer
from tests.oauth.issue_support import ISSUER, api_with_oauth, issuer, key_service, serving

pytestmark = pytest.mark.anyio

FORM = {"grant_type": "client_credentials"}


@dataclass
class Served:
    base: str
    http: httpx.AsyncClient
    keys: KeyService
    tokens: TokenIssuer
    key_id: str
    key: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    keys = key_service()
    record, key = await keys.create("partner", scopes=["projects:read", "projects:write"])
    tokens = issuer(keys)
    app = api_with_oauth(tokens).build(
        key_store=keys, audit_sink=None, read="1000/minute", write="1000/minute"
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield Served(base, http, keys, tokens, record.id, key)
    await keys.aclose()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _pyjwt_verify(base: str, token: str) -> dict[str, Any]:
    # PyJWT fetches our JWKS over HTTP itself (urllib, so in a thread: the server shares our loop)
    # and knows nothing else about us: only the published public keys vouch for the token.
    def verify() -> dict[str, Any]:
        client = pyjwt.PyJWKClient(f"{base}/.well-known/jwks.json", cache_keys=False)
        key = client.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = pyjwt.decode(
            token, key.key, algorithms=["EdDSA", "ES256"], audience=ISSUER, issuer=ISSUER
        )
        return claims

    return await asyncio.to_thread(verify)


async def test_basic_auth_token_verified_by_pyjwt_over_http(served: Served) -> None:
    """Basic client auth gets an RFC 6749 §5.1 answer (no-store); PyJWT verifies the token with
    the JWKS it fetched from us over HTTP, and the token calls the API route's key id."""
    r = await served.http.post(
        "/oauth/token", data=FORM, headers={"authorization": _basic(served.key_id, served.key)}
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = await _pyjwt_verify(served.base, body["access_token"])
    assert claims["sub"] == claims["client_id"] == served.key_id
    assert pyjwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


async def test_client_secret_post_and_bearer_key(served: Served) -> None:
    """client_secret in the form (with or without client_id) and Authorization: Bearer <key> work;
    scope narrows the token."""
    for data, headers in (
        ({**FORM, "client_secret": served.key}, {}),
        ({**FORM, "client_id": served.key_id, "client_secret": served.key}, {}),
        ({**FORM, "scope": "projects:read"}, {"authorization": f"Bearer {served.key}"}),
    ):
        r = await served.http.post("/oauth/token", data=data, headers=headers)
        assert r.status_code == 200, r.text
    assert r.json()["scope"] == "projects:read"
    assert (await _pyjwt_verify(served.base, r.json()["access_token"]))["scope"] == "projects:read"


async def test_unusable_keys_get_identical_401s(served: Served) -> None:
    """O3: unknown, wrong, malformed, revoked and expired keys, by Basic or in the body, get
    byte-identical invalid_client bodies, 401, no-store, and WWW-Authenticate for the scheme."""
    revoked_rec, revoked = await served.keys.create("revoked")
    await served.keys.revoke(revoked_rec.id)
    expired_rec, expired = await served.keys.create("expired", expires_in=60)
    await served.keys.update(expired_rec.id, expires_at=1_000_000_000.0)
    unknown = served.key[:-12] + "B" * 12
    bodies = set()
    for presented, user in (
        (unknown, served.key_id),
        (served.key + "x", served.key_id),
        ("not-a-key", served.key_id),
        (revoked, revoked_rec.id),
        (expired, expired_rec.id),
        (served.key, "someone-else"),
    ):
        for how in ("basic", "post"):
            if how == "basic":
                r = await served.http.post(
                    "/oauth/token", data=FORM, headers={"authorization": _basic(user, presented)}
                )
                assert r.headers["www-authenticate"].startswith("Basic ")
            else:
                r = await served.http.post(
                    "/oauth/token", data={**FORM, "client_id": user, "client_secret": presented}
                )
            assert r.status_code == 401
            assert r.headers["cache-control"] == "no-store"
            bodies.add(r.content)
    r = await served.http.post("/oauth/token", data=FORM, headers={"authorization": "Bearer x"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer ")
    bodies.add(r.content)
    assert bodies == {
        b'{"error":"invalid_client","error_description":"Client authentication failed."}'
    }


async def test_request_errors_follow_rfc6749(served: Served) -> None:
    """invalid_request, unsupported_grant_type, invalid_scope, invalid_client (no credential),
    each as §5.2 JSON with no-store."""
    auth = {"authorization": _basic(served.key_id, served.key)}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": {}, "headers": auth}, 400, "invalid_request"),
        ({"data": {"grant_type": "password"}, "headers": auth}, 400, "unsupported_grant_type"),
        ({"data": {**FORM, "scope": "admin"}, "headers": auth}, 400, "invalid_scope"),
        ({"data": {**FORM, "scope": 'bad"scope'}, "headers": auth}, 400, "invalid_scope"),
        ({"data": FORM}, 401, "invalid_client"),
        ({"data": {**FORM, "client_id": served.key_id}}, 401, "invalid_client"),
        (
            {"data": {**FORM, "client_secret": served.key}, "headers": auth},
            400,
            "invalid_request",
        ),
        ({"json": FORM, "headers": auth}, 400, "invalid_request"),
        (
            {
                "content": b"grant_type=client_credentials&grant_type=client_credentials",
                "headers": {**auth, "content-type": "application/x-www-form-urlencoded"},
            },
            400,
            "invalid_request",
        ),
    ]
    for kwargs, status, error in cases:
        r = await served.http.post("/oauth/token", **kwargs)
        assert (r.status_code, r.json()["error"]) == (status, error), (kwargs, r.text)
        assert r.headers["cache-control"] == "no-store"
        assert "error_description" in r.json()
    r = await served.http.post(f"/oauth/token?client_secret={served.key}", data=FORM, headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await served.http.get("/oauth/token")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_failed_attempt_throttle_applies_to_the_token_endpoint() -> None:
    """O4: the key's failed-attempt throttle counts token requests: after the per-IP budget of
    wrong keys, this address gets 429 slow_down with Retry-After, and the API itself refuses the
    same address too (one throttle)."""
    keys = key_service(failures_per_ip=3)
    record, key = await keys.create("k", scopes=["projects:read"])
    app = api_with_oauth(issuer(keys)).build(
        key_store=keys, audit_sink=None, read="1000/minute", write="1000/minute"
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        for _ in range(3):
            r = await http.post("/oauth/token", data=FORM, auth=(record.id, key + "x"))
            assert r.status_code == 401
        r = await http.post("/oauth/token", data=FORM, auth=(record.id, key))
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "slow_down" and int(r.headers["retry-after"]) >= 1
        r = await http.get("/api/v1/projects", headers={"x-api-key": key})
        assert r.status_code == 429
    await keys.aclose()


async def test_rotation_keeps_old_tokens_verifiable_and_next_is_published_first(
    served: Served,
) -> None:
    """O5: the key that signs after a rotation was in the JWKS before it; a token signed before
    the rotation still verifies (PyJWT, fresh JWKS over HTTP) after it."""
    auth = {"authorization": _basic(served.key_id, served.key)}
    old = (await served.http.post("/oauth/token", data=FORM, headers=auth)).json()["access_token"]
    kids_before = {
        k["kid"] for k in (await served.http.get("/.well-known/jwks.json")).json()["keys"]
    }
    await served.tokens.signing.rotate()
    new = (await served.http.post("/oauth/token", data=FORM, headers=auth)).json()["access_token"]
    new_kid = pyjwt.get_unverified_header(new)["kid"]
    assert new_kid != pyjwt.get_unverified_header(old)["kid"]
    assert new_kid in kids_before
    assert (await _pyjwt_verify(served.base, old))["sub"] == served.key_id
    assert (await _pyjwt_verify(served.base, new))["sub"] == served.key_id


async def test_jwks_and_metadata(served: Served) -> None:
    """The JWKS is cacheable and public-only; RFC 8414 metadata names the endpoints."""
    r = await served.http.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["content-type"] == "application/jwk-set+json"
    for jwk in r.json()["keys"]:
        assert not {"d", "p", "q"} & set(jwk)
    meta = (await served.http.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert meta["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    doc = (await served.http.get("/api/v1/openapi.json")).json()
    flow = doc["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token" and "projects:read" in flow["scopes"]
    op = doc["paths"]["/api/v1/projects"]["get"]
    assert {"OAuth2": ["projects:read"]} in op["security"]
    assert "/oauth/token" not in doc["paths"]


async def test_no_private_key_material_in_responses_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """O1: no private JWK member or operator secret in any answer of the endpoint (success,
    errors, JWKS, metadata) nor in any log line while serving them."""
    caplog.set_level(logging.DEBUG)
    keys = key_service()
    record, key = await keys.create("k")
    signing = SigningKeys(secret="z" * 40)
    tokens = TokenIssuer(keys, signing, issuer=ISSUER)
    app = api_with_oauth(tokens).build(key_store=keys, audit_sink="memory://")
    seen: list[str] = []
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        for method, path, kwargs in (
            ("POST", "/oauth/token", {"data": FORM, "auth": (record.id, key)}),
            ("POST", "/oauth/token", {"data": FORM, "auth": (record.id, "wrong")}),
            ("POST", "/oauth/token", {"data": {"grant_type": "x"}}),
            ("GET", "/.well-known/jwks.json", {}),
            ("GET", "/.well-known/oauth-authorization-server", {}),
        ):
            r = await http.request(method, path, **kwargs)
            seen.append(r.text + json.dumps(dict(r.headers)))
        await signing.rotate()
        seen.append((await http.get("/.well-known/jwks.json")).text)
    privates = [str(k._private["d"]) for k in await signing.keys()]
    text = "\n".join(seen) + caplog.text + repr(tokens) + repr(signing)
    for value in [*privates, "z" * 40]:
        assert value not in text
    await keys.aclose()
