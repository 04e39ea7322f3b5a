"""Token paths beside the attacks: the key behind our tokens, store outages, configuration, JWKS
parsing and cache headers, claims mapping edge cases, websockets."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, KeySet, OKPKey

from extapi_kit._types import Message
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth.claims import ClaimsMapping, parse_scopes
from extapi_kit.oauth.jwks_remote import RemoteJWKS, _lifetime, keys_from_jwks
from extapi_kit.oauth.keysets import LocalKeys, key_fits
from extapi_kit.oauth.principals import TokenAuthenticator
from extapi_kit.oauth.verify import ExternalIssuer, InvalidTokenError, TokenVerifier
from tests.oauth.tokens import (
    ISSUER,
    bearer,
    claims_for,
    client,
    ed25519_pair,
    es256_pair,
    jwks,
    protected,
    service,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


class Clock:
    """A settable epoch clock."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_revoke_refuses_tokens_at_once_in_process() -> None:
    """O15: in one process, a revoked key's cached token is refused on the next request (the
    record cache hears the store's change at once), and so is an expired key's."""
    svc, pair = service(), ed25519_pair()
    app = protected(svc, TokenVerifier(issuer=ISSUER, keys=jwks(pair)))
    one, _ = await svc.create("one", scopes=["items:read"])
    two, _ = await svc.create("two", scopes=["items:read"])
    async with client(app) as c:
        token = pair.sign(claims_for(one.id))
        assert (await c.get("/", headers=bearer(token))).status_code == 200
        assert (await c.get("/", headers=bearer(token))).status_code == 200
        await svc.revoke(one.id)
        assert (await c.get("/", headers=bearer(token))).status_code == 401
        other = pair.sign(claims_for(two.id))
        assert (await c.get("/", headers=bearer(other))).status_code == 200
        await svc.update(two.id, expires_at=time.time() - 1)
        assert (await c.get("/", headers=bearer(other))).status_code == 401
    await svc.aclose()


async def test_forged_tokens_spend_the_sources_failed_attempt_budget() -> None:
    """O4, A4: tokens that fail verification count against the source like wrong keys: after
    the per-source budget (3 here) the address gets 429 with Retry-After, even with a valid
    token, and no signature is checked for it; another address is unaffected."""
    svc, pair, attacker = service(failures_per_ip=3), ed25519_pair(), ed25519_pair()
    verifier = TokenVerifier(issuer=ISSUER, keys=jwks(pair))
    app = protected(svc, verifier)
    record, _ = await svc.create("k", scopes=["items:read"])
    good = pair.sign(claims_for(record.id))
    forged = attacker.sign(claims_for(record.id), kid=pair.kid)  # our kid, another key
    async with client(app) as c:
        for _ in range(3):
            assert (await c.get("/", headers=bearer(forged))).status_code == 401
        calls = 0
        verify = verifier.verify

        async def counting(token: str) -> Any:
            nonlocal calls
            calls += 1
            return await verify(token)

        verifier.verify = counting  # type: ignore[method-assign]
        refused = await c.get("/", headers=bearer(good))
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert calls == 0
    transport = httpx.ASGITransport(app, client=("198.51.100.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example.test") as c:
        assert (await c.get("/", headers=bearer(good))).status_code == 200
    await svc.aclose()


async def test_a_tokens_use_is_its_keys_last_use() -> None:
    """O20: a key used only through access tokens shows when it was last used (written in the
    background, at most once per interval), like a key sent itself."""
    svc, pair = service(), ed25519_pair()
    app = protected(svc, TokenVerifier(issuer=ISSUER, keys=jwks(pair)))
    record, _ = await svc.create("token-only", scopes=["items:read"])
    assert record.last_used_at is None
    before = time.time()
    async with client(app) as c:
        token = pair.sign(claims_for(record.id))
        for _ in range(3):
            assert (await c.get("/", headers=bearer(token))).status_code == 200
    await svc.flush()
    used = (await svc.get(record.id)).last_used_at
    assert used is not None and used >= before - 1
    await svc.aclose()


async def test_record_cache_follows_rotation_grace_and_ttl() -> None:
    """A rotated key's tokens work until the grace ends (the record cache never vouches past
    the key's own validity), and records are re-read after cache_ttl."""
    clock = Clock()
    svc = KeyService("memory://", hasher=None, clock=clock)
    pair = ed25519_pair()
    auth = TokenAuthenticator(
        TokenVerifier(issuer=ISSUER, keys=jwks(pair), clock=clock),
        svc,
        cache_ttl=60,
        cache_size=1,
        clock=clock,
    )
    record, _ = await svc.create("r", scopes=["items:read"])
    token = pair.sign(claims_for(record.id))
    first = await auth.authenticate(token)
    assert first.auth == "token"
    assert await auth.authenticate(token) is first  # memo: same key entry, same principal
    await svc.rotate(record.id, grace=30)
    assert (await auth.authenticate(token)).key_id == record.id
    clock.now += 31
    with pytest.raises(InvalidTokenError):
        await auth.authenticate(token)
    other, _ = await svc.create("o", scopes=["items:read"])
    await auth.authenticate(pair.sign(claims_for(other.id)))
    assert len(auth._records) == 1  # bounded
    auth.invalidate("*")
    assert auth._records == {}
    assert "TokenAuthenticator" in repr(auth)
    await svc.aclose()


async def test_key_store_down_cached_tokens_work_others_get_503(
    private_redis: RedisServer,
) -> None:
    """With the key store down, a token whose key record is cached keeps working; a token of
    another key gets 503 with Retry-After (fail closed, like keys)."""
    svc = service(private_redis.url, cache_ttl=60)
    pair = ed25519_pair()
    app = protected(svc, TokenVerifier(issuer=ISSUER, keys=jwks(pair)))
    cached, _ = await svc.create("cached", scopes=["items:read"])
    cold, _ = await svc.create("cold", scopes=["items:read"])
    async with client(app) as c:
        token = pair.sign(claims_for(cached.id))
        assert (await c.get("/", headers=bearer(token))).status_code == 200
        private_redis.stop()
        assert (await c.get("/", headers=bearer(token))).status_code == 200
        r = await c.get("/", headers=bearer(pair.sign(claims_for(cold.id))))
        assert r.status_code == 503
        assert "retry-after" in r.headers
    await app.aclose()


async def test_websocket_with_a_token() -> None:
    """A websocket handshake with a valid token is let through; with a forged one it is closed
    before accept (policy violation)."""
    svc, pair = service(), ed25519_pair()
    record, _ = await svc.create("ws", scopes=["items:read"])
    seen: list[Any] = []

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["extapi_kit"].principal.auth)
        await send({"type": "websocket.accept"})

    from extapi_kit.middleware.api_key import ApiKeyMiddleware

    app = ApiKeyMiddleware(
        ws_app, store=svc, token_verifier=TokenVerifier(issuer=ISSUER, keys=jwks(pair))
    )
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    for token, expected in (
        (pair.sign(claims_for(record.id)), "websocket.accept"),
        (ed25519_pair().sign(claims_for(record.id)), "websocket.close"),
    ):
        sent.clear()

        scope = {
            "type": "websocket",
            "path": "/ws",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
            "client": ("203.0.113.7", 1),
            "query_string": b"",
        }
        await app(scope, receive, send)
        assert sent[0]["type"] == expected
    assert seen == ["token"]
    await svc.aclose()


async def test_overlong_and_non_token_bearers() -> None:
    """A bearer longer than max_token_length is refused unread; an over-long value that is not
    JWT-shaped stays under the key length rule."""
    svc, pair = service(), ed25519_pair()
    app = protected(svc, TokenVerifier(issuer=ISSUER, keys=jwks(pair), max_token_length=1024))
    record, _ = await svc.create("k", scopes=["items:read"])
    big = pair.sign(claims_for(record.id, padding="x" * 2000))
    async with client(app) as c:
        assert (await c.get("/", headers=bearer(big))).status_code == 401
        assert (await c.get("/", headers=bearer("a" * 600))).status_code == 401
    verifier = TokenVerifier(issuer=ISSUER, keys=jwks(pair), max_token_length=1024)
    with pytest.raises(InvalidTokenError):
        await verifier.verify(big)
    await svc.aclose()


def test_verifier_configuration_errors() -> None:
    """Each misconfiguration names itself at construction."""
    keys = jwks(ed25519_pair())
    mapping = ClaimsMapping(name="x")
    bad: list[dict[str, Any]] = [
        {"issuer": ISSUER, "keys": keys, "cache_size": -1},
        {"issuer": ISSUER},
        {"issuer": ISSUER, "keys": keys, "types": ()},
        {"external": [ExternalIssuer(issuer="i", audience=[], claims=mapping, jwks_url="x")]},
        {"issuer": ISSUER, "keys": keys, "audience": 3},
        {"issuer": ISSUER, "keys": keys, "algorithms": []},
        {"issuer": ISSUER, "keys": {"not": "jwks"}},
        {"external": [ExternalIssuer(issuer="i", audience="a", claims=mapping)]},
        {
            "external": [
                ExternalIssuer(issuer="i", audience="a", claims=mapping, keys=LocalKeys(keys)),
                ExternalIssuer(issuer="i", audience="a", claims=mapping, keys=LocalKeys(keys)),
            ]
        },
        {
            "external": [
                ExternalIssuer(
                    issuer="i", audience="a", claims=mapping, algorithms=("HS256",), jwks_url="x"
                )
            ]
        },
    ]
    for options in bad:
        with pytest.raises(ConfigurationError):
            TokenVerifier(**options)
    with pytest.raises(ConfigurationError):
        ClaimsMapping(name="bad name")
    with pytest.raises(ConfigurationError):
        ClaimsMapping(name="x", client_claims=())
    with pytest.raises(ConfigurationError):
        RemoteJWKS("ftp://x")
    with pytest.raises(ConfigurationError):
        RemoteJWKS("https://x", deadline=0)


async def test_external_issuer_with_pinned_keys_and_es384() -> None:
    """An external issuer with a pinned key set (a joserfc KeySet), single-string options, and
    the string forms of types and algorithms; forget() drops one cached token."""
    key = ECKey.generate_key("P-384", parameters={"kid": "p384"})
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed"})
    pinned = LocalKeys(KeySet([key, ed]))
    assert "p384" in repr(pinned)
    verifier = TokenVerifier(
        external=[
            ExternalIssuer(
                issuer="https://idp",
                audience="api",
                claims=ClaimsMapping(name="idp", client_claims="azp"),  # type: ignore[arg-type]
                keys=pinned,
                algorithms="ES384",
                types="at+jwt",
            )
        ]
    )
    assert verifier.issuers == ("https://idp",)
    assert "https://idp" in repr(verifier)
    from joserfc import jwt

    from extapi_kit.oauth.keysets import JWSAllowlist

    now = int(time.time())
    claims = {"iss": "https://idp", "aud": "api", "exp": now + 60, "azp": "c1", "scp": "a b"}
    token = jwt.encode(
        {"alg": "ES384", "kid": "p384", "typ": "at+jwt"},
        claims,
        key,
        registry=JWSAllowlist(algorithms=["ES384"]),
    )
    verified = await verifier.verify(token)
    assert verified.principal is not None and verified.principal.key_id == "idp:c1"
    verifier.forget(token)
    assert verifier._cache == {}
    no_client = jwt.encode(
        {"alg": "ES384", "kid": "p384", "typ": "at+jwt"},
        {**claims, "azp": None},
        key,
        registry=JWSAllowlist(algorithms=["ES384"]),
    )
    with pytest.raises(InvalidTokenError):
        await verifier.verify(no_client)
    assert not key_fits(ed, "ES256") and not key_fits(key, "PS384")


def test_jwks_documents_are_filtered() -> None:
    """keys_from_jwks keeps signature keys with a kid only: encryption keys, symmetric keys,
    keys with private members, junk items and unsupported key types are skipped."""
    pair = ed25519_pair("good")
    private = OKPKey.generate_key("Ed25519", parameters={"kid": "priv"}).as_dict(private=True)
    document = {
        "keys": [
            pair.public_jwk,
            {**es256_pair("enc").public_jwk, "use": "enc"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            private,
            {**pair.public_jwk, "kid": None},
            "junk",
            {"kty": "XYZ", "kid": "weird"},
        ]
    }
    assert set(keys_from_jwks(document)) == {"good"}
    with pytest.raises(ValueError):
        keys_from_jwks({"keys": {}})


def test_cache_lifetime_from_headers() -> None:
    """max-age (and s-maxage) wins, no-store/no-cache means 0, Expires counts from Date, an
    invalid Expires is already expired, nothing at all is the default."""
    h = httpx.Headers
    assert _lifetime(h({"cache-control": "public, max-age=120"}), 300) == 120
    assert _lifetime(h({"cache-control": "s-maxage=50"}), 300) == 50
    assert _lifetime(h({"cache-control": "no-store"}), 300) == 0
    dated = {"date": "Fri, 04 Dec 2026 10:00:00 GMT", "expires": "Fri, 04 Dec 2026 10:10:00 GMT"}
    assert _lifetime(h(dated), 300) == 600
    assert _lifetime(h({"expires": "0"}), 300) == 0
    assert _lifetime(h({}), 300) == 300


async def test_oversized_or_failing_jwks_answers_keep_nothing_new() -> None:
    """A JWKS answer over max_bytes, or an HTTP error, is a failed fetch (the source reports it
    unavailable when it holds no keys); aclose works with and without a client."""
    from tests.webhooks.receivers import serve

    async def big(scope: Any, receive: Any, send: Any) -> None:
        status = 500 if scope["path"] == "/err" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b'{"keys": [' + b" " * 5000 + b"]}"})

    async with serve(big) as url:
        for path in ("/big", "/err"):
            remote = RemoteJWKS(f"{url}{path}", max_bytes=1000)
            with pytest.raises(Exception, match="could not fetch"):
                await remote.find("k")
            assert "keys=0" in repr(remote)
            await remote.aclose()
    await RemoteJWKS("https://never.example").aclose()


def test_claims_edge_cases() -> None:
    """Scopes: too many or too long are dropped; non-string clients and owners are ignored;
    grants that are not an object give none."""
    assert parse_scopes(" ".join(f"s{i}" for i in range(300))) == frozenset()
    assert parse_scopes(["x" * 201, "ok"]) == {"ok"}
    mapping = ClaimsMapping(name="m", owner_claim="org", grants_claim="g")
    assert mapping.client({"client_id": 5, "sub": "x" * 300}) is None
    p = mapping.principal({"azp": "c", "org": 7, "g": ["x"]}, token_id=None)
    assert p is not None and p.owner is None and p.grants == {}
    p = mapping.principal({"azp": "c", "g": {"projects": ["a", 1], 2: ["b"]}}, token_id="j")
    assert p is not None and p.grants == {"projects": frozenset({"a"})}


async def test_signing_keys_object_and_a_failing_key_provider() -> None:
    """``keys=SigningKeys`` reads its published JWKS; a provider answering garbage keeps the
    keys it had (a 401 for the unknown kid, never a 500), and one whose store fails answers 503."""
    from extapi_kit.exceptions import StoreUnavailableError
    from extapi_kit.oauth.issuer import TokenIssuer
    from extapi_kit.oauth.signing import SigningKeys

    svc = service()
    signing = SigningKeys("memory://")
    record, key = await svc.create("p", scopes=["items:read"])
    issued = await TokenIssuer(svc, signing, issuer=ISSUER).issue(key)
    verifier = TokenVerifier(issuer=ISSUER, keys=signing)
    assert (await verifier.verify(issued.access_token)).subject == record.id

    pair = ed25519_pair("known")
    answers: list[Any] = [jwks(pair), {"keys": "garbage"}]

    def provider() -> Any:
        answer = answers.pop(0) if answers else None
        if answer is None:
            raise StoreUnavailableError("key store down")
        return answer

    keys = LocalKeys(provider, reload_interval=0)
    app = protected(svc, TokenVerifier(issuer=ISSUER, keys=keys))
    async with client(app) as c:
        assert (
            await c.get("/", headers=bearer(pair.sign(claims_for(record.id))))
        ).status_code == 200
        stranger = ed25519_pair("stranger").sign(claims_for(record.id))
        assert (await c.get("/", headers=bearer(stranger))).status_code == 401  # garbage: kept
        assert (
            await c.get("/", headers=bearer(pair.sign(claims_for(record.id))))
        ).status_code == 200
        r = await c.get("/", headers=bearer(stranger))  # store down now
        assert r.status_code == 503
    await svc.aclose()
