"""TokenVerifier: our own RFC 9068 tokens, the library wiring, the verified-token cache."""

from __future__ import annotations

import time
from typing import Any

import jwt as pyjwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OKPKey

from extapi_kit.context import has_scope
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.oauth.claims import narrow_scopes, parse_scopes
from extapi_kit.oauth.keysets import JWSAllowlist, LocalKeys, key_fits
from extapi_kit.oauth.verify import InvalidTokenError, TokenVerifier, looks_like_jwt
from tests.oauth.tokens import AUDIENCE, ISSUER, claims_for, ed25519_pair, es256_pair, jwks

pytestmark = pytest.mark.anyio

# RFC 8037 appendix A.1 (key) and A.4 (the JWS of "Example of Ed25519 signing").
RFC8037_PUBLIC: dict[str, str | list[str]] = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


class Clock:
    """A settable epoch clock."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def test_rfc8037_vector_through_the_verifier_wiring() -> None:
    """The RFC 8037 A.4 Ed25519 JWS verifies with the registry and key check the verifier uses;
    one changed signature character does not."""
    key = OKPKey.import_key(RFC8037_PUBLIC)
    registry = JWSAllowlist(algorithms=["EdDSA"])
    assert key_fits(key, "EdDSA")
    obj = jws.extract_compact(RFC8037_JWS.encode())
    assert obj.payload == b"Example of Ed25519 signing"
    assert jws.validate_compact(obj, key, registry=registry)
    bad = RFC8037_JWS[:-2] + ("AA" if not RFC8037_JWS.endswith("AA") else "BA")
    assert not jws.validate_compact(jws.extract_compact(bad.encode()), key, registry=registry)


@pytest.mark.parametrize("make", [ed25519_pair, es256_pair], ids=["EdDSA", "ES256"])
async def test_token_signed_by_another_library_is_accepted(make: Any) -> None:
    """A token PyJWT signed (EdDSA or ES256, typ at+jwt) verifies: claims, sub, scopes, jti."""
    pair = make()
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks(pair))
    claims = claims_for("k123", scope="items:read orders:write")
    verified = await verifier.verify(pair.sign(claims))
    assert verified.subject == "k123"
    assert verified.scopes == {"items:read", "orders:write"}
    assert verified.token_id == claims["jti"]
    assert not verified.external
    assert verified.claims["aud"] == AUDIENCE


async def test_issuer_tokens_verify_with_pyjwt_and_with_us() -> None:
    """A token of our TokenIssuer verifies with PyJWT (the other library) against our JWKS, and
    with our TokenVerifier reading the same signing keys."""
    from extapi_kit.oauth.issuer import TokenIssuer
    from extapi_kit.oauth.signing import SigningKeys
    from tests.oauth.tokens import service

    svc = service()
    signing = SigningKeys("memory://")
    issuer = TokenIssuer(svc, signing, issuer=ISSUER)
    record, key = await svc.create("partner", scopes=["items:read"])
    issued = await issuer.issue(key)
    document = await signing.jwks()
    header = pyjwt.get_unverified_header(issued.access_token)
    public = pyjwt.PyJWK(next(k for k in document["keys"] if k["kid"] == header["kid"]))
    decoded = pyjwt.decode(
        issued.access_token, public.key, algorithms=[header["alg"]], audience=AUDIENCE
    )
    assert decoded["sub"] == record.id
    verifier = TokenVerifier(issuer=ISSUER, keys=signing.jwks)
    assert (await verifier.verify(issued.access_token)).subject == record.id
    await svc.aclose()


async def test_cached_token_still_expires() -> None:
    """A cached token is refused once the clock passes exp + leeway (the cache never outlives
    exp)."""
    pair = ed25519_pair()
    clock = Clock()
    verifier = TokenVerifier(issuer=ISSUER, keys=jwks(pair), leeway=10, clock=clock)
    claims = claims_for("k1")
    token = pair.sign(claims)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # served from the cache
    clock.now = claims["exp"] + 10
    with pytest.raises(InvalidTokenError) as err:
        await verifier.verify(token)
    assert err.value.reason == "expired"


async def test_cached_token_dies_with_its_signing_key() -> None:
    """When our key set drops the key a cached token was signed with, the token is refused."""
    old, new = ed25519_pair("old"), ed25519_pair("new")
    published = {"doc": jwks(old, new)}
    keys = LocalKeys(lambda: published["doc"], reload_interval=0)
    verifier = TokenVerifier(issuer=ISSUER, keys=keys)
    token = old.sign(claims_for("k1"))
    await verifier.verify(token)
    published["doc"] = jwks(new)
    await keys.reload()
    with pytest.raises(InvalidTokenError) as err:
        await verifier.verify(token)
    assert err.value.reason == "kid"
    assert (await verifier.verify(new.sign(claims_for("k1")))).subject == "k1"


async def test_rotated_in_key_found_without_restart() -> None:
    """A key added to the set after start (rotation) is found on its first token."""
    first, second = ed25519_pair("a"), ed25519_pair("b")
    published = {"doc": jwks(first)}
    verifier = TokenVerifier(issuer=ISSUER, keys=lambda: published["doc"])
    await verifier.verify(first.sign(claims_for("k1")))
    published["doc"] = jwks(first, second)
    # LocalKeys reloads at most once per reload_interval on an unknown kid; the first load
    # happened at the first verify, so wait it out on the injected clock instead of sleeping.
    source: Any = verifier._issuers[ISSUER].keys
    source._loaded_at -= source.reload_interval
    assert (await verifier.verify(second.sign(claims_for("k2")))).subject == "k2"


async def test_cache_is_bounded() -> None:
    """The verified-token cache never holds more than cache_size tokens."""
    pair = ed25519_pair()
    verifier = TokenVerifier(issuer=ISSUER, keys=jwks(pair), cache_size=3)
    for i in range(10):
        await verifier.verify(pair.sign(claims_for(f"k{i}")))
    assert len(verifier._cache) == 3


def test_configuration_is_checked() -> None:
    """Unsafe or meaningless settings are refused at construction: leeway > 300 s, HS* without
    a secret, a short secret, "none", no issuer at all."""
    keys = jwks(ed25519_pair())
    with pytest.raises(ConfigurationError):
        TokenVerifier(issuer=ISSUER, keys=keys, leeway=301)
    with pytest.raises(ConfigurationError):
        TokenVerifier(issuer=ISSUER, keys=keys, algorithms=["HS256"])
    with pytest.raises(ConfigurationError):
        TokenVerifier(issuer=ISSUER, keys=keys, algorithms=["none"])
    with pytest.raises(ConfigurationError):
        TokenVerifier(issuer=ISSUER, hmac_secret="short", algorithms=["HS256"])
    with pytest.raises(ConfigurationError):
        TokenVerifier()


async def test_hmac_only_when_configured_with_a_secret() -> None:
    """With hmac_secret configured, an HS256 token signed with that secret verifies."""
    secret = "s" * 32
    verifier = TokenVerifier(issuer=ISSUER, hmac_secret=secret, algorithms=["HS256"])
    token = pyjwt.encode(claims_for("k1"), secret, algorithm="HS256", headers={"typ": "at+jwt"})
    assert (await verifier.verify(token)).subject == "k1"
    other = pyjwt.encode(claims_for("k1"), "t" * 32, algorithm="HS256", headers={"typ": "at+jwt"})
    with pytest.raises(InvalidTokenError):
        await verifier.verify(other)


def test_jwt_shape_detection() -> None:
    """A compact JWS is told apart from an API key by shape alone (keys never hold a dot)."""
    pair = ed25519_pair()
    assert looks_like_jwt(pair.sign(claims_for("k1")))
    assert not looks_like_jwt("xk_live_abcdef_0123456789")
    assert not looks_like_jwt("eyJhbGciOiJub25lIn0.e30")


def test_scopes_claim_forms() -> None:
    """``scope`` as a space-separated string and ``scp`` as a list both parse; junk gives none."""
    assert parse_scopes("a b  c") == {"a", "b", "c"}
    assert parse_scopes(["a", "b", 3]) == {"a", "b"}
    assert parse_scopes({"a": 1}) == frozenset()
    assert parse_scopes(None) == frozenset()


SCOPE = st.sampled_from(
    ["items:read", "items:write", "items:*", "orders:read", "*", "admin", "admin:keys"]
)


@given(st.frozensets(SCOPE), st.frozensets(SCOPE), SCOPE)
def test_narrowed_scopes_never_widen(key: frozenset[str], token: frozenset[str], need: str) -> None:
    """Key scopes ∩ token scope: whatever the narrowed set covers, the key and the token both
    cover (wildcards and reserved scopes included)."""
    narrowed = narrow_scopes(key, token)
    if has_scope(narrowed, need):
        assert has_scope(key, need)
        assert has_scope(token, need)


async def test_concurrent_first_tokens_share_one_key_load() -> None:
    """Tokens arriving together before the keys were ever loaded all verify (they join the one
    load in flight instead of finding "recently loaded, kid unknown")."""
    import asyncio

    pair = ed25519_pair()
    loads = 0

    async def published() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return jwks(pair)

    verifier = TokenVerifier(issuer=ISSUER, keys=published)
    tokens = [pair.sign(claims_for(f"k{i}")) for i in range(8)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [r.subject for r in results] == [f"k{i}" for i in range(8)]
    assert loads == 1
