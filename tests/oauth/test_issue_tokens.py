"""TokenIssuer: the RFC 9068 claims, scope narrowing (never widening), key checks, lifetimes."""

from __future__ import annotations

import jwt as pyjwt
import pytest

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.oauth import OAuthError, SigningKeys, TokenIssuer
from extapi_kit.oauth.issuer import parse_scope
from tests.oauth.issue_support import ISSUER, issuer, key_service

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _decode(tokens: TokenIssuer, token: str, audience: str = ISSUER) -> dict[str, object]:
    jwks = pyjwt.PyJWKSet.from_dict(await tokens.signing.jwks())
    key = jwks[pyjwt.get_unverified_header(token)["kid"]].key
    claims: dict[str, object] = pyjwt.decode(
        token,
        key,
        algorithms=["EdDSA", "ES256"],
        audience=audience,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return claims


async def test_claims_follow_rfc9068() -> None:
    """The token carries typ at+jwt, iss, sub = client_id = key id, aud, exp/iat/nbf, a 128-bit
    url-safe jti, the key's scopes, owner and grants; PyJWT verifies it with our JWKS alone."""
    clock = Clock()
    keys = key_service(clock=clock)
    record, key = await keys.create(
        "partner",
        owner="acme",
        scopes=["projects:read", "projects:write"],
        grants={"projects": ["p2", "p1"]},
    )
    tokens = issuer(keys, clock=clock)
    issued = await tokens.issue(key)
    header = pyjwt.get_unverified_header(issued.access_token)
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": issued.kid}
    claims = await _decode(tokens, issued.access_token)
    assert claims["sub"] == claims["client_id"] == record.id
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER
    assert claims["iat"] == claims["nbf"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 900
    assert claims["scope"] == "projects:read projects:write"
    assert claims["owner"] == "acme"
    assert claims["grants"] == {"projects": ["p1", "p2"]}
    jti = str(claims["jti"])
    assert len(jti) == 22 and all(c.isalnum() or c in "-_" for c in jti)
    assert issued.response() == {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": 900,
        "scope": "projects:read projects:write",
    }
    assert issued.access_token not in repr(issued)
    second = await tokens.issue(key)
    assert second.jti != issued.jti
    await keys.aclose()


async def test_no_owner_claim_for_a_key_without_owner() -> None:
    """``owner`` is present only when the key has one."""
    keys = key_service()
    _, key = await keys.create("solo")
    tokens = issuer(keys)
    claims = await _decode(tokens, (await tokens.issue(key)).access_token)
    assert "owner" not in claims and claims["scope"] == "" and claims["grants"] == {}


async def test_scope_narrows_and_never_widens() -> None:
    """O2: a requested scope inside the key's is granted as requested (wildcards included when the
    key's cover them); any scope outside, a broader wildcard, or a reserved scope via ``*`` is
    invalid_scope and nothing is issued."""
    keys = key_service()
    _, key = await keys.create("k", scopes=["projects:*", "reports:read"])
    tokens = issuer(keys)
    narrowed = await tokens.issue(key, scope="projects:read")
    assert (await _decode(tokens, narrowed.access_token))["scope"] == "projects:read"
    assert (await tokens.issue(key, scope="projects:* reports:read")).scope == (
        "projects:* reports:read"
    )
    for wider in ("reports:write", "projects:read admin", "*", "reports:*", "reports:read x"):
        with pytest.raises(OAuthError) as err:
            await tokens.issue(key, scope=wider)
        assert err.value.error == "invalid_scope" and err.value.status == 400
    _, star = await keys.create("star", scopes=["*"])
    with pytest.raises(OAuthError) as err:
        await tokens.issue(star, scope="admin")  # A14: reserved scopes never come from "*"
    assert err.value.error == "invalid_scope"


def test_parse_scope_refuses_malformed_values() -> None:
    """RFC 6749 §3.3 scope tokens only: no empty value, no quotes or backslashes, no control."""
    assert parse_scope("a b  a") == ("a", "b")
    for bad in ("", " ", 'a"b', "a\\b", "a\x00", "é", " ".join(["s"] * 101)):
        with pytest.raises(OAuthError) as err:
            parse_scope(bad)
        assert err.value.error == "invalid_scope"


async def test_unusable_keys_get_one_invalid_client_answer() -> None:
    """O3: unknown, wrong, malformed, revoked and expired keys all raise the same invalid_client
    (same status and description); a client_id that is not the key's id too."""
    clock = Clock()
    keys = key_service(clock=clock, cache_ttl=0)
    record, key = await keys.create("k")
    revoked_rec, revoked = await keys.create("r")
    await keys.revoke(revoked_rec.id)
    _, expiring = await keys.create("e", expires_in=120)
    _, other = await keys.create("o")
    clock.now += 121
    unknown = key[:-10] + "A" * 10
    tokens = issuer(keys, clock=clock)
    answers = set()
    for presented, client_id in (
        (unknown, None),
        (key + "x", None),
        ("garbage", None),
        (revoked, None),
        (expiring, None),
        (key, "some-other-id"),
        (other, record.id),
    ):
        with pytest.raises(OAuthError) as err:
            await tokens.issue(presented, client_id=client_id)
        answers.add((err.value.error, err.value.status, err.value.description))
    assert answers == {("invalid_client", 401, "Client authentication failed.")}
    ok = await tokens.issue(key, client_id=record.id)
    assert ok.key_id == record.id


async def test_token_never_outlives_its_key() -> None:
    """A key expiring in 5 minutes gets a token expiring with it, not after 15 minutes."""
    clock = Clock()
    keys = key_service(clock=clock)
    _, key = await keys.create("k", expires_in=300)
    tokens = issuer(keys, clock=clock)
    issued = await tokens.issue(key)
    assert issued.expires_at == int(clock.now) + 300 and issued.expires_in == 300


async def test_key_network_rules_apply() -> None:
    """A key limited to 10.0.0.0/8 gets a token from 10.1.2.3 and unauthorized_client elsewhere."""
    keys = key_service()
    _, key = await keys.create("k", allowed_cidrs="10.0.0.0/8")
    tokens = issuer(keys)
    assert (await tokens.issue(key, client_ip="10.1.2.3")).key_id
    for ip in ("192.0.2.1", None):
        with pytest.raises(OAuthError) as err:
            await tokens.issue(key, client_ip=ip)
        assert err.value.error == "unauthorized_client"


async def test_allow_client_hook() -> None:
    """allow_client=False for a key answers unauthorized_client."""
    keys = key_service()
    _, key = await keys.create("k", env="test")
    tokens = issuer(keys, allow_client=lambda p: p.env == "live")
    with pytest.raises(OAuthError) as err:
        await tokens.issue(key)
    assert err.value.error == "unauthorized_client"


async def test_lifetime_and_audience_options() -> None:
    """lifetime="5m" and a list audience end up in exp and aud; bounds are 60 s .. 24 h."""
    keys = key_service()
    _, key = await keys.create("k")
    tokens = issuer(keys, lifetime="5m", audience=["https://a.test", "https://b.test"])
    issued = await tokens.issue(key)
    assert issued.expires_in == 300
    claims = await _decode(tokens, issued.access_token, audience="https://b.test")
    assert claims["aud"] == ["https://a.test", "https://b.test"]
    for bad in (59, "25h"):
        with pytest.raises(ConfigurationError):
            issuer(keys, lifetime=bad)
    with pytest.raises(ConfigurationError):
        TokenIssuer(keys, SigningKeys(), issuer="api.example.test")
    with pytest.raises(ConfigurationError):
        TokenIssuer(keys, SigningKeys(retain=600), issuer=ISSUER, lifetime="15m")
