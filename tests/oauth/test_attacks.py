"""Classic JWT attacks against the auth layer: every one gets the same 401 as a bad API key.

The tokens are forged the way an attacker would (PyJWT, or by hand where a library refuses to
help), and sent through ApiKeyMiddleware with a TokenVerifier over real ASGI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.oauth.verify import TokenVerifier
from tests.oauth.tokens import (
    AUDIENCE,
    ISSUER,
    SigningPair,
    bearer,
    claims_for,
    client,
    ed25519_pair,
    jwks,
    protected,
    rsa_pair,
    service,
)
from tests.webhooks.receivers import serve

pytestmark = pytest.mark.anyio


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _ed25519(pair: SigningPair, header: dict[str, Any], claims: dict[str, Any]) -> str:
    # By hand: PyJWT refuses to put a non-string kid in a header; an attacker would not.
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = pair.private.sign(signing_input.encode())  # type: ignore[call-arg]
    return f"{signing_input}.{_b64(signature)}"


class Stack:
    """A protected app, a key id with a live key, and the uniform 401 a bad key gets."""

    def __init__(self, svc: KeyService, app: ApiKeyMiddleware, pair: SigningPair, key_id: str):
        self.svc, self.app, self.pair, self.key_id = svc, app, pair, key_id
        self.baseline: httpx.Response | None = None

    async def call(self, token: str) -> httpx.Response:
        async with client(self.app) as c:
            return await c.get("/items", headers=bearer(token))

    async def assert_refused(self, token: str) -> None:
        """The token gets exactly the response a wrong API key gets (status, headers, body)."""
        r = await self.call(token)
        assert self.baseline is not None
        assert r.status_code == 401, r.text
        assert r.content == self.baseline.content
        assert r.headers == self.baseline.headers


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    svc = service()
    pair = ed25519_pair()
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks(pair))
    record, _ = await svc.create("partner", scopes=["items:read"])
    s = Stack(svc, protected(svc, verifier), pair, record.id)
    async with client(s.app) as c:
        s.baseline = await c.get("/items", headers={"X-API-Key": "xk_live_nope"})
    assert s.baseline.status_code == 401
    good = await s.call(pair.sign(claims_for(record.id)))
    assert good.status_code == 200, good.text  # the same stack accepts a real token
    yield s
    await svc.aclose()


async def test_alg_none_refused(stack: Stack) -> None:
    """O7: an unsigned token (``alg: none``, any case, no signature) is refused like a bad key."""
    claims = claims_for(stack.key_id)
    for alg in ("none", "None", "NONE"):
        await stack.assert_refused(_forge({"alg": alg, "typ": "at+jwt"}, claims))
        await stack.assert_refused(_forge({"alg": alg, "typ": "at+jwt", "kid": "ed-1"}, claims))
    # PyJWT will produce one too, for the record.
    unsigned = pyjwt.encode(claims, "", algorithm="none", headers={"typ": "at+jwt"})
    await stack.assert_refused(unsigned)


async def test_public_key_as_hmac_secret_refused(stack: Stack) -> None:
    """O8: RS/HS confusion: an HS256 token whose secret is our public key (as JWK JSON, as the
    raw ``x`` and as PEM) is refused; the key found by kid is never used as an HMAC secret."""
    from cryptography.hazmat.primitives import serialization

    public = stack.pair.private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets = [
        json.dumps(stack.pair.public_jwk).encode(),
        base64.urlsafe_b64decode(stack.pair.public_jwk["x"] + "=="),
        stack.pair.public_jwk["x"].encode(),
        pem,
    ]
    claims = claims_for(stack.key_id)
    for secret in secrets:
        for alg in ("HS256", "HS384", "HS512"):
            header = {"alg": alg, "typ": "at+jwt", "kid": stack.pair.kid}
            await stack.assert_refused(_hs256(header, claims, secret))


async def test_rsa_key_confusion_for_an_external_style_issuer() -> None:
    """O8: with an RSA key published, an HS256 token keyed by its PEM is refused, and so is an
    RS256 token for an issuer that only allows EdDSA/ES256."""
    from cryptography.hazmat.primitives import serialization

    rsa = rsa_pair()
    svc = service()
    record, _ = await svc.create("p", scopes=["items:read"])
    verifier = TokenVerifier(issuer=ISSUER, keys=jwks(rsa, ed25519_pair()))
    app = protected(svc, verifier)
    pem = rsa.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = claims_for(record.id)
    forged = _hs256({"alg": "HS256", "typ": "at+jwt", "kid": rsa.kid}, claims, pem)
    async with client(app) as c:
        assert (await c.get("/", headers=bearer(forged))).status_code == 401
        assert (await c.get("/", headers=bearer(rsa.sign(claims)))).status_code == 401
    await svc.aclose()


async def test_kid_injection_refused(stack: Stack) -> None:
    """O9: kid values that would be paths, SQL, URLs, huge or non-string are a failed lookup,
    nothing more: the token (validly signed by an attacker key) is refused."""
    attacker = ed25519_pair()
    claims = claims_for(stack.key_id)
    kids: list[Any] = [
        "../../../../../../dev/null",
        "/etc/passwd",
        "' OR '1'='1' --",
        "ed-1' UNION SELECT 'AAAA' --",
        "https://evil.example/key.json",
        "x" * 5000,
        "\x00",
        123,
        ["ed-1"],
        None,
    ]
    for kid in kids:
        await stack.assert_refused(
            _ed25519(attacker, {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, claims)
        )


async def test_key_url_and_embedded_key_headers_ignored(stack: Stack) -> None:
    """O10: ``jku``/``x5u`` pointing at an attacker's JWKS (served on 127.0.0.1) and an embedded
    ``jwk``/``x5c`` are ignored: the token is refused and the attacker's server is never asked."""
    attacker = ed25519_pair("ed-1")  # same kid as ours, different key
    asked: list[str] = []

    async def evil(scope: Scope, receive: Receive, send: Send) -> None:
        asked.append(scope["path"])
        body = json.dumps(jwks(attacker)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with serve(evil) as url:
        claims = claims_for(stack.key_id)
        for extra in (
            {"jku": f"{url}/jwks.json"},
            {"x5u": f"{url}/cert.pem"},
            {"jwk": attacker.public_jwk},
            {"x5c": ["MIIB"]},
            {"jku": f"{url}/jwks.json", "kid": "elsewhere"},
        ):
            await stack.assert_refused(attacker.sign(claims, **extra))
    assert asked == []


async def test_expired_and_not_yet_valid_refused(stack: Stack) -> None:
    """O11: exp in the past and nbf/iat in the future (beyond the 30 s leeway) are refused; a
    token inside the leeway is accepted; exp missing or not a number is refused."""
    now = int(time.time())
    pair, kid = stack.pair, stack.key_id
    await stack.assert_refused(pair.sign(claims_for(kid, exp=now - 31)))
    await stack.assert_refused(pair.sign(claims_for(kid, nbf=now + 120)))
    await stack.assert_refused(pair.sign(claims_for(kid, iat=now + 120)))
    await stack.assert_refused(pair.sign({k: v for k, v in claims_for(kid).items() if k != "exp"}))
    await stack.assert_refused(pair.sign(claims_for(kid, exp=str(now + 300))))
    await stack.assert_refused(pair.sign(claims_for(kid, exp=True)))
    r = await stack.call(pair.sign(claims_for(kid, exp=now - 5)))
    assert r.status_code == 200  # inside the bounded leeway


async def test_wrong_issuer_or_audience_refused(stack: Stack) -> None:
    """O12: another issuer, a look-alike issuer, a token for another audience, and no audience
    at all are refused; a list audience naming ours is accepted."""
    pair, kid = stack.pair, stack.key_id
    await stack.assert_refused(pair.sign(claims_for(kid, iss="https://evil.example")))
    await stack.assert_refused(pair.sign(claims_for(kid, iss=ISSUER + "/")))
    await stack.assert_refused(pair.sign(claims_for(kid, aud="https://other-api.example")))
    await stack.assert_refused(pair.sign(claims_for(kid, aud=["https://other-api.example"])))
    await stack.assert_refused(pair.sign({k: v for k, v in claims_for(kid).items() if k != "aud"}))
    ok = await stack.call(pair.sign(claims_for(kid, aud=["https://other.example", AUDIENCE])))
    assert ok.status_code == 200


async def test_typ_mismatch_refused(stack: Stack) -> None:
    """O13: an ID token or plain JWT (``typ: JWT``, missing typ, ``id_token+jwt``) is not an
    access token (RFC 9068 §2.1); ``application/at+jwt`` is."""
    pair, claims = stack.pair, claims_for(stack.key_id)
    await stack.assert_refused(pair.sign(claims, typ="JWT"))
    await stack.assert_refused(pair.sign(claims, typ="id_token+jwt"))
    no_typ = pyjwt.encode(claims, pair.private, algorithm="EdDSA", headers={"kid": pair.kid})
    no_typ = _strip_typ(no_typ, pair)
    await stack.assert_refused(no_typ)
    assert (await stack.call(pair.sign(claims, typ="application/at+jwt"))).status_code == 200


def _strip_typ(token: str, pair: SigningPair) -> str:
    # PyJWT always adds "typ": "JWT"; sign a header without it by hand through PyJWT's API.
    from jwt.api_jws import PyJWS

    jws = PyJWS()
    payload = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return jws.encode(raw, pair.private, algorithm="EdDSA", headers={"kid": pair.kid, "typ": None})


async def test_tampered_and_garbled_tokens_refused(stack: Stack) -> None:
    """O14: a token whose payload was changed after signing (wider scope, another sub), a token
    signed by an unknown key, garbage with JWT shape, and an unknown key id in sub all get the
    same 401 as a wrong API key."""
    pair, kid = stack.pair, stack.key_id
    token = pair.sign(claims_for(kid))
    head, _, sig = token.split(".")
    wider = _b64(json.dumps(claims_for(kid, scope="*")).encode())
    await stack.assert_refused(f"{head}.{wider}.{sig}")
    await stack.assert_refused(ed25519_pair(pair.kid).sign(claims_for(kid)))
    await stack.assert_refused("eyJ.eyJ.x")
    await stack.assert_refused("eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.AAAA")
    await stack.assert_refused(pair.sign(claims_for("unknownkeyid0000")))
    await stack.assert_refused(pair.sign(claims_for(kid, client_id="someone-else")))


async def test_token_scope_and_key_networks_apply(stack: Stack) -> None:
    """O18: a token carries only what its key and its scope claim both hold (403 for a scope
    the token narrowed away or the key lost), and the key's networks apply to its tokens."""
    svc, pair = stack.svc, stack.pair
    record, _ = await svc.create("wide", scopes=["items:*", "orders:write"])
    narrow = pair.sign(claims_for(record.id, scope="orders:write"))
    async with client(stack.app) as c:
        r = await c.get("/items", headers=bearer(narrow))
        assert r.status_code == 403, r.text
        wide = pair.sign(claims_for(record.id, scope="items:read orders:write"))
        r = await c.get("/items", headers=bearer(wide))
        assert r.status_code == 200
        assert r.json()["scopes"] == ["items:read", "orders:write"]
        await svc.update(record.id, scopes=["orders:write"])  # the key loses items:*
        assert (await c.get("/items", headers=bearer(wide))).status_code == 403
        await svc.update(record.id, scopes=["items:*"], allowed_cidrs=["10.0.0.0/8"])
        r = await c.get("/items", headers=bearer(wide))
        assert r.status_code == 403
        assert r.json()["type"].endswith("ip-not-allowed")
