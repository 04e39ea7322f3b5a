"""Helpers for token validation tests: keys, tokens signed by PyJWT or joserfc, a protected stack.

PyJWT plays the *other* JOSE library (an identity provider, or a client forging tokens); joserfc
is what extapi_kit verifies with, so a token PyJWT signed and we accept proves interoperability.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import get_context
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.oauth.verify import TokenVerifier
from tests.keys.support import cheap_hasher

ISSUER = "https://api.example.test"
AUDIENCE = "https://api.example.test"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class SigningPair:
    """A private key (for PyJWT) and its public JWK (for a JWKS)."""

    kid: str
    alg: str
    private: PrivateKey
    public_jwk: dict[str, Any]

    def sign(self, claims: Mapping[str, Any], **header: Any) -> str:
        """Sign ``claims`` with PyJWT; ``header`` adds or overrides header members."""
        headers = {"kid": self.kid, "typ": "at+jwt", **header}
        return pyjwt.encode(dict(claims), self.private, algorithm=self.alg, headers=headers)


def ed25519_pair(kid: str = "ed-1") -> SigningPair:
    """Return a fresh Ed25519 pair (EdDSA)."""
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    return SigningPair(kid, "EdDSA", private, {**jwk, "kid": kid, "use": "sig"})


def es256_pair(kid: str = "ec-1") -> SigningPair:
    """Return a fresh P-256 pair (ES256)."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return SigningPair(kid, "ES256", private, {**jwk, "kid": kid, "use": "sig"})


def rsa_pair(kid: str = "rsa-1", bits: int = 2048) -> SigningPair:
    """Return a fresh RSA pair (RS256)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return SigningPair(kid, "RS256", private, {**jwk, "kid": kid, "use": "sig"})


def jwks(*pairs: SigningPair) -> dict[str, Any]:
    """Return the public JWKS of ``pairs``."""
    return {"keys": [p.public_jwk for p in pairs]}


def claims_for(key_id: str, *, scope: str = "items:read", **extra: Any) -> dict[str, Any]:
    """Return RFC 9068 claims of our issuer for ``key_id``, valid for 5 minutes."""
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": key_id,
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(12),
        "client_id": key_id,
        "scope": scope,
        **extra,
    }


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 with the principal the stack authenticated (auth, key id, scopes, jti)."""
    p = get_context(scope).principal
    body = json.dumps(
        {
            "auth": p.auth if p else None,
            "key_id": p.key_id if p else None,
            "scopes": sorted(p.scopes) if p else [],
            "token_id": p.token_id if p else None,
            "owner": p.owner if p else None,
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def service(store: str = "memory://", **options: Any) -> KeyService:
    """A KeyService with the cheapest argon2 parameters."""
    return KeyService(store, hasher=cheap_hasher(), **options)


def protected(
    svc: KeyService, verifier: TokenVerifier, *, scopes: tuple[str, ...] = ("items:read",)
) -> ApiKeyMiddleware:
    """``echo_app`` behind ApiKeyMiddleware accepting keys and tokens, requiring ``scopes``."""
    return ApiKeyMiddleware(echo_app, store=svc, token_verifier=verifier, required_scopes=scopes)


def client(app: ASGIApp) -> httpx.AsyncClient:
    """An httpx client for ``app`` through real ASGI."""
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://api.example.test")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
