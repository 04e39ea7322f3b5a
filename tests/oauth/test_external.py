"""External identity providers: a real JWKS served by uvicorn on 127.0.0.1, tokens signed by PyJWT.

The provider can go down, hang, or answer garbage; cached keys keep working, an unknown ``kid``
refetches at most once per interval, and no request waits past the deadline.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.oauth.claims import ClaimsMapping
from extapi_kit.oauth.jwks_remote import RemoteJWKS
from extapi_kit.oauth.verify import ExternalIssuer, TokenVerifier
from tests.oauth.tokens import (
    SigningPair,
    bearer,
    client,
    ed25519_pair,
    es256_pair,
    jwks,
    protected,
    rsa_pair,
    service,
)
from tests.webhooks.receivers import serve

pytestmark = pytest.mark.anyio

IDP = "https://idp.example.test/"
API = "https://api.example.test/v1"


class IdP:
    """A JWKS endpoint whose behaviour the test switches: ok, down, slow, garbage, empty."""

    def __init__(self, *pairs: SigningPair) -> None:
        self.pairs = list(pairs)
        self.mode = "ok"
        self.cache_control = "public, max-age=300"
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        if self.mode == "slow":
            # Hang until the client gives up (then the server can shut down at once).
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        status, body = 200, json.dumps(jwks(*self.pairs)).encode()
        if self.mode == "down":
            status, body = 503, b"unavailable"
        elif self.mode == "garbage":
            body = b"<html>not a key set</html>"
        elif self.mode == "not-jwks":
            body = b'{"keys": "nope"}'
        elif self.mode == "empty":
            body = b'{"keys": []}'
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", self.cache_control.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Monotonic:
    """A settable monotonic clock for the JWKS cache."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def idp_claims(client_id: str = "client-1", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": IDP,
        "sub": f"{client_id}@clients",
        "azp": client_id,
        "aud": API,
        "exp": now + 300,
        "iat": now,
        "jti": secrets.token_hex(8),
        "scope": "items:read",
        **extra,
    }


async def _fetch_done(remote: RemoteJWKS) -> None:
    """Wait (bounded) until the background refresh the last request started has finished."""
    async with asyncio.timeout(20):
        while remote._task is not None:  # noqa: ASYNC110 - the task is private, no event
            await asyncio.sleep(0.01)


@dataclass
class World:
    idp: IdP
    url: str
    clock: Monotonic
    svc: KeyService
    verifier: TokenVerifier
    app: ApiKeyMiddleware
    pair: SigningPair

    @property
    def remote(self) -> RemoteJWKS:
        source: Any = self.verifier._issuers[IDP].keys
        assert isinstance(source, RemoteJWKS)
        return source


def _verifier(url: str, clock: Monotonic, **mapping: Any) -> TokenVerifier:
    return TokenVerifier(
        external=[
            ExternalIssuer(
                issuer=IDP,
                audience=API,
                jwks_url=f"{url}/.well-known/jwks.json",
                claims=ClaimsMapping(name="idp", **mapping),
                jwks_options={
                    "clock": clock,
                    "refetch_interval": 30,
                    "deadline": 0.5,
                    "timeout": 2,
                    "min_ttl": 10,
                },
            )
        ]
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    pair = rsa_pair()
    idp = IdP(pair)
    async with serve(idp) as url:
        clock = Monotonic()
        verifier = _verifier(url, clock, owner_claim="org_id", grants_claim="grants")
        svc = service()
        app = protected(svc, verifier)
        yield World(idp, url, clock, svc, verifier, app, pair)
        await app.aclose()
        await svc.aclose()


async def test_external_tokens_from_another_library_map_to_a_principal(world: World) -> None:
    """O19: an RS256 token PyJWT signed as the provider would is accepted; the principal is
    ``idp:<azp>`` with the token's scopes, owner and grants, marked auth=token with its jti."""
    claims = idp_claims(org_id="org-7", grants={"projects": ["p1"]}, scope="items:read x:y")
    async with client(world.app) as c:
        r = await c.get("/items", headers=bearer(world.pair.sign(claims)))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "auth": "token",
        "key_id": "idp:client-1",
        "scopes": ["items:read", "x:y"],
        "token_id": claims["jti"],
        "owner": "org-7",
    }
    assert world.idp.requests == 1


async def test_scp_list_roles_and_scope_prefix() -> None:
    """O19: ``scp`` as a list (Okta) and Entra-style ``roles`` with a prefix map to scopes; a
    provider's ``JWT`` typ is accepted only when configured."""
    pair = es256_pair()
    idp = IdP(pair)
    async with serve(idp) as url:
        clock = Monotonic()
        okta = _verifier(url, clock)
        entra = TokenVerifier(
            external=[
                ExternalIssuer(
                    issuer=IDP,
                    audience=API,
                    jwks_url=f"{url}/jwks",
                    types=("at+jwt", "JWT"),
                    claims=ClaimsMapping(
                        name="entra", scope_claims=("roles",), scope_prefix="api://x/"
                    ),
                )
            ]
        )
        t = await okta.verify(pair.sign(idp_claims(scp=["items:read", "a:b"], scope=None)))
        assert t.scopes == {"items:read", "a:b"}
        roles = idp_claims(roles=["api://x/items:read", "other"], scope=None)
        t = await entra.verify(pair.sign(roles, typ="JWT"))
        assert t.principal is not None and t.principal.key_id == "entra:client-1"
        assert t.scopes == {"items:read"}
        with pytest.raises(Exception, match="invalid access token"):
            await okta.verify(pair.sign(idp_claims(), typ="JWT"))
        await okta.aclose()
        await entra.aclose()


async def test_external_subject_never_becomes_one_of_our_keys(world: World) -> None:
    """O19: a provider token whose client id equals one of our key ids gets ``idp:<id>``, never
    that key's principal (own budget, own idempotency records); and a token claiming the
    provider's issuer but signed with a key only *we* hold is refused (keys are per issuer)."""
    record, _ = await world.svc.create("ours", scopes=["*"])
    ours = ed25519_pair("ours")
    async with client(world.app) as c:
        r = await c.get("/items", headers=bearer(world.pair.sign(idp_claims(record.id))))
        assert r.json()["key_id"] == f"idp:{record.id}"
        r = await c.get("/items", headers=bearer(ours.sign(idp_claims())))
        assert r.status_code == 401


async def test_cached_keys_survive_a_provider_outage(world: World) -> None:
    """O16: with the set cached, the provider down, hanging or answering garbage (and the set
    stale), tokens keep working; every request returns (no hang past the deadline)."""
    token = world.pair.sign(idp_claims())
    async with client(world.app) as c:
        assert (await c.get("/", headers=bearer(token))).status_code == 200
        for mode in ("down", "garbage", "not-jwks", "empty", "slow"):
            world.idp.mode = mode
            world.clock.now += 10_000  # the set is stale: a background refresh is attempted
            fresh = world.pair.sign(idp_claims())  # uncached token: the keys are needed now
            async with asyncio.timeout(20):
                r = await c.get("/", headers=bearer(fresh))
            assert r.status_code == 200, (mode, r.text)
            await _fetch_done(world.remote)
        assert world.remote.kids == {world.pair.kid}
        assert world.idp.requests == 6  # the first fetch, then one failed refresh per mode


async def test_unknown_kid_during_outage_answers_within_the_deadline(world: World) -> None:
    """O16: a token with an unknown kid while the provider hangs is refused (401) once the
    deadline passes; the request does not wait for the hung fetch."""
    async with client(world.app) as c:
        assert (await c.get("/", headers=bearer(world.pair.sign(idp_claims())))).status_code == 200
        world.idp.mode = "slow"
        world.clock.now += 31  # past the refetch interval: the unknown kid may refetch
        stranger = rsa_pair("rotated-in").sign(idp_claims())
        async with asyncio.timeout(20):
            r = await c.get("/", headers=bearer(stranger))
        assert r.status_code == 401


async def test_provider_down_at_start_is_503_then_recovers() -> None:
    """O16: with no key set ever fetched and the provider down, the answer is 503 with
    Retry-After (like a key store outage), and tokens work once it is back."""
    pair = rsa_pair()
    idp = IdP(pair)
    idp.mode = "down"
    async with serve(idp) as url:
        clock = Monotonic()
        svc = service()
        app = protected(svc, _verifier(url, clock))
        token = pair.sign(idp_claims())
        async with client(app) as c:
            r = await c.get("/", headers=bearer(token))
            assert r.status_code == 503
            assert "retry-after" in r.headers
            idp.mode = "ok"
            clock.now += 31
            assert (await c.get("/", headers=bearer(token))).status_code == 200
        await app.aclose()
        await svc.aclose()


async def test_unknown_kid_flood_refetches_once_per_interval(world: World) -> None:
    """O17: 40 tokens with invented kids cost the provider one fetch per refetch interval, and
    a kid rotated in at the provider is found on the next allowed refetch."""
    async with client(world.app) as c:
        assert (await c.get("/", headers=bearer(world.pair.sign(idp_claims())))).status_code == 200
        before = world.idp.requests
        for i in range(40):
            forged = rsa_pair(f"kid-{i}") if i < 2 else world.pair
            token = forged.sign(idp_claims(), kid=f"invented-{i}")
            assert (await c.get("/", headers=bearer(token))).status_code == 401
        assert world.idp.requests - before <= 1
        rotated = es256_pair("rotated")
        world.idp.pairs.append(rotated)
        world.clock.now += 31
        r = await c.get("/", headers=bearer(rotated.sign(idp_claims())))
        assert r.status_code == 200
        assert world.idp.requests - before <= 2


async def test_cache_headers_decide_when_to_refetch(world: World) -> None:
    """O17: ``max-age`` decides freshness: within it no refetch happens, past it one background
    refetch does (the cached key answers meanwhile)."""
    world.idp.cache_control = "max-age=600"
    async with client(world.app) as c:
        assert (await c.get("/", headers=bearer(world.pair.sign(idp_claims())))).status_code == 200
        assert world.idp.requests == 1
        world.clock.now += 500
        assert (await c.get("/", headers=bearer(world.pair.sign(idp_claims())))).status_code == 200
        assert world.idp.requests == 1
        world.clock.now += 200
        assert (await c.get("/", headers=bearer(world.pair.sign(idp_claims())))).status_code == 200
        async with asyncio.timeout(10):
            while world.idp.requests < 2:  # noqa: ASYNC110 - a counter on the fake provider
                await asyncio.sleep(0.01)
        assert world.idp.requests == 2
