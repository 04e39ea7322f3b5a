"""Token issuing benchmarks: tokens issued per second, and the raw signing cost beside a peer.

Rows (same run, one process, no network):

- ``issue_for`` (EdDSA / ES256): :meth:`TokenIssuer.issue_for` for an authenticated key: claims,
  a key-record read (to cap ``exp`` at the key's expiry), a joserfc JWS signature.
- ``POST /oauth/token``: the :class:`TokenEndpoint` ASGI app called in-process with Basic auth for
  a key in the verify cache (form parsing, auth, issue, JSON answer).
- ``pyjwt.encode`` (peer): PyJWT signing the same claims with the same kind of key, the cost of
  the signature alone in another JOSE library.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import MutableMapping
from typing import Any

import jwt as pyjwt
from argon2 import profiles
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth import SigningKeys, TokenEndpoint, TokenIssuer

ISSUER = "https://api.example.test"
N = 3000


async def _rate(fn: Any, n: int) -> float:
    for _ in range(min(200, n)):
        await fn()
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - start)


def _sync_rate(fn: Any, n: int) -> float:
    for _ in range(min(200, n)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


async def _bench(n: int) -> list[dict[str, Any]]:
    keys = KeyService("memory://", hasher=Argon2Hasher(profiles.CHEAPEST), cache_ttl=3600)
    record, key = await keys.create("bench", owner="acme", scopes=["a:read", "a:write"])
    principal = await keys.verify(key)
    rows: list[dict[str, Any]] = []
    claims: dict[str, Any] = {}
    for alg in ("EdDSA", "ES256"):
        tokens = TokenIssuer(keys, SigningKeys(algorithm=alg), issuer=ISSUER)
        issued = await tokens.issue_for(principal)
        claims = pyjwt.decode(issued.access_token, options={"verify_signature": False})

        async def one(tokens: TokenIssuer = tokens) -> None:
            await tokens.issue_for(principal)

        per_s = await _rate(one, n)
        rows.append({"case": f"issue_for ({alg})", "tokens/s": round(per_s), "µs": 1e6 / per_s})
    endpoint = TokenEndpoint(TokenIssuer(keys, SigningKeys(), issuer=ISSUER))
    auth = b"Basic " + base64.b64encode(f"{record.id}:{key}".encode())
    body = b"grant_type=client_credentials"
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth/token",
        "query_string": b"",
        "headers": [
            (b"authorization", auth),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ],
        "client": ("203.0.113.7", 1234),
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def post() -> None:
        await endpoint(dict(scope), receive, send)

    per_s = await _rate(post, n)
    if set(status) != {200}:
        raise RuntimeError(f"token endpoint answered {sorted(set(status))}")
    rows.append({"case": "POST /oauth/token (EdDSA)", "tokens/s": round(per_s), "µs": 1e6 / per_s})
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    for alg, private in (("EdDSA", ed), ("ES256", p256)):
        per_s = _sync_rate(lambda p=private, a=alg: pyjwt.encode(claims, p, algorithm=a), n)
        rows.append(
            {"case": f"peer: pyjwt.encode ({alg})", "tokens/s": round(per_s), "µs": 1e6 / per_s}
        )
    await keys.aclose()
    return rows


def run(n: int = N) -> list[dict[str, Any]]:
    """Return the rows of this suite.

    Args:
        n: tokens per case.
    """
    return asyncio.run(_bench(n))
