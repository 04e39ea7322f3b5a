"""Access-token validation benchmarks (issue 19): what a token costs beside an API key.

In-process, one run: the same ApiKeyMiddleware and the same built stack answer with an API key
and with a JWT access token of the same key, so the difference is the token path alone. Rows:

- the middleware with a cached key vs a cached token, and what the token path adds over the bare
  app (target: <= 20 µs for a cached valid token);
- ``TokenVerifier.verify`` cached, and uncached (Ed25519 and ES256 signature checks);
- the full ``build()`` stack (auth, rate limit, router) with a key vs with a token.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from argon2 import profiles
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

from bench.keys import _app, _per_request_ns, _stats
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.oauth.keysets import JWSAllowlist
from extapi_kit.oauth.verify import TokenVerifier
from extapi_kit.routing import ExternalAPI, HandlerRequest

ISSUER = "https://bench.example"
TARGET_US = 20


def _sign(key: OKPKey | ECKey, alg: str, key_id: str, n: int = 0) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": key_id,
        "aud": ISSUER,
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "jti": f"bench-{n}",
        "client_id": key_id,
        "scope": "read",
    }
    header = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, registry=JWSAllowlist(algorithms=[alg]))


async def _timed(fn: Any, items: list[Any]) -> list[int]:
    out = []
    for item in items:
        t0 = time.perf_counter_ns()
        await fn(item)
        out.append(time.perf_counter_ns() - t0)
    return out


async def _run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = 20_000
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    jwks = {"keys": [ed.as_dict(private=False), ec.as_dict(private=False)]}
    service = KeyService(MemoryKeyStore(), hasher=Argon2Hasher(profiles.CHEAPEST))
    record, key = await service.create("bench", scopes=["read"])
    token = _sign(ed, "EdDSA", record.id)
    verifier = TokenVerifier(issuer=ISSUER, keys=jwks)

    protected = ApiKeyMiddleware(
        _app(), store=service, required_scopes=["read"], token_verifier=verifier
    )
    by_key = [(b"x-api-key", key.encode())]
    by_token = [(b"authorization", b"Bearer " + token.encode())]
    await _per_request_ns(protected, by_token, 500)  # warm the token and key caches
    await _per_request_ns(protected, by_key, 500)
    # Interleaved, so the three share whatever else the machine is doing at each moment.
    bare, keyed, tokened = await _interleaved(
        [(_app(), by_key), (protected, by_key), (protected, by_token)], n
    )
    rows.append(_stats("starlette bare", bare))
    rows.append(_stats("+ ApiKeyMiddleware, API key (cached)", keyed))
    rows.append(_stats("+ ApiKeyMiddleware, access token (cached)", tokened))
    added = (statistics.median(tokened) - statistics.median(bare)) / 1000
    rows.append({"name": "added by a cached token", "median_us": added, "target_us": TARGET_US})
    beside = (statistics.median(tokened) - statistics.median(keyed)) / 1000
    rows.append({"name": "token minus key, same middleware", "median_us": beside})

    cached = await _timed(verifier.verify, [token] * n)
    rows.append(_stats("TokenVerifier.verify, cached", cached))
    cold = TokenVerifier(issuer=ISSUER, keys=jwks, cache_size=0)
    ed_tokens = [_sign(ed, "EdDSA", record.id, i) for i in range(2000)]
    ec_tokens = [_sign(ec, "ES256", record.id, i) for i in range(2000)]
    rows.append(
        _stats("TokenVerifier.verify, uncached EdDSA", await _timed(cold.verify, ed_tokens))
    )
    rows.append(
        _stats("TokenVerifier.verify, uncached ES256", await _timed(cold.verify, ec_tokens))
    )

    api = ExternalAPI(title="bench")

    @api.get("/hello", scopes=["read"])
    async def hello(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    stack = api.build(
        key_store=service,
        token_verifier=verifier,
        rate_limit_storage="memory://",
        read="100000000/minute",
        audit_sink=None,
        body_limit=None,
    )

    await _full(stack, by_key, 500)
    await _full(stack, by_token, 500)
    full_key, full_token = await _interleaved(
        [(stack, _path(by_key)), (stack, _path(by_token))], n // 2
    )
    rows.append(_stats("build() stack, API key", full_key))
    rows.append(_stats("build() stack, access token", full_token))
    diff = (statistics.median(full_token) - statistics.median(full_key)) / 1000
    rows.append({"name": "build() stack: token minus key", "median_us": diff})
    await service.aclose()
    return rows


def _path(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # A marker header the interleaved driver turns into the registry's path.
    return [*headers, (b"x-bench-path", b"/api/v1/hello")]


async def _interleaved(
    variants: list[tuple[Any, list[tuple[bytes, bytes]]]], n: int
) -> list[list[int]]:
    from bench.keys import _receive, _scope, _send

    templates = []
    for _, headers in variants:
        template = _scope([h for h in headers if h[0] != b"x-bench-path"])
        for name, value in headers:
            if name == b"x-bench-path":
                template["path"], template["raw_path"] = value.decode(), value
        templates.append(template)
    out: list[list[int]] = [[] for _ in variants]
    for _ in range(n):
        for i, (app, _) in enumerate(variants):
            scope = dict(templates[i])
            t0 = time.perf_counter_ns()
            await app(scope, _receive, _send)
            out[i].append(time.perf_counter_ns() - t0)
    return out


async def _full(stack: Any, headers: list[tuple[bytes, bytes]], n: int) -> list[int]:
    from bench.keys import _receive, _scope, _send

    template = _scope(headers)
    template["path"], template["raw_path"] = "/api/v1/hello", b"/api/v1/hello"
    statuses: list[int] = []

    async def status(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await stack(dict(template), _receive, status)
    if statuses != [200]:  # figures of a refusal would mean nothing
        raise RuntimeError(f"the stack answered {statuses}")
    for _ in range(500):
        await stack(dict(template), _receive, _send)
    out = []
    for _ in range(n):
        scope = dict(template)
        t0 = time.perf_counter_ns()
        await stack(scope, _receive, _send)
        out.append(time.perf_counter_ns() - t0)
    return out


def run() -> list[dict[str, Any]]:
    """Run the access-token benchmarks and return one row per measurement."""
    return asyncio.run(_run())


if __name__ == "__main__":
    for row in run():
        print(row)
