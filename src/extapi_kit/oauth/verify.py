"""Verifying JWT access tokens (RFC 9068) from our own issuer and from external identity providers.

The checks, cheapest first (every refusal is one :class:`InvalidTokenError`, answered with the
same 401 as a bad API key)::

    length -> cache (keyed BLAKE2b of the token) -> compact JWS shape -> payload JSON
    -> issuer (exact match, selects the trusted issuer) -> alg allowlist of that issuer
    -> typ -> kid -> key of that kid from the issuer's key source -> key type matches alg
    -> signature (joserfc) -> exp / nbf / iat with bounded leeway -> aud -> sub -> cache

Classic attacks and why they fail (cases O7-O14):

- ``alg: none`` and any algorithm outside the issuer's allowlist are refused before any key is
  looked at; the allowlist never holds ``none``, and HS* only when a secret was configured.
- RS/HS confusion: the key is chosen by ``kid`` from the issuer's *asymmetric* key set and must
  be of the type the algorithm needs (OKP Ed25519 for EdDSA, EC P-256 for ES256, RSA >= 2048 bits
  for RS*/PS*); an HMAC token never meets a public key used as its secret.
- ``kid`` is a plain dictionary lookup (bounded length, printable ASCII): no file, no SQL.
- ``jku``, ``x5u``, ``jwk`` and ``x5c`` headers are never used to find a key.
- ``typ`` must be ``at+jwt`` (RFC 9068 §2.1), so an ID token or a logout token is no access token.

A verified token is cached by a keyed digest of its text until its ``exp`` (plus leeway), bounded
in size; a cache hit is re-checked against the clock and against the key set's version, so a
signing key removed from the set stops vouching for the tokens it signed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeGuard

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key

from extapi_kit import telemetry
from extapi_kit._types import Clock
from extapi_kit.context import Principal
from extapi_kit.exceptions import ConfigurationError, InvalidKeyError
from extapi_kit.oauth.claims import parse_scopes
from extapi_kit.oauth.issuers import (
    ACCESS_TOKEN_TYPES,
    DEFAULT_ALGORITHMS,
    EXTERNAL_ALGORITHMS,
    HMAC_ALGORITHMS,
    ExternalIssuer,
    Trusted,
    audiences,
    norm_type,
    ours,
)
from extapi_kit.oauth.issuers import external as external_issuer
from extapi_kit.oauth.jwks_remote import RemoteJWKS
from extapi_kit.oauth.keysets import KeysLike, KeySource, LocalKeys, PublishesJWKS, key_fits

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "DEFAULT_ALGORITHMS",
    "EXTERNAL_ALGORITHMS",
    "ExternalIssuer",
    "InvalidTokenError",
    "KeySource",
    "LocalKeys",
    "TokenVerifier",
    "VerifiedToken",
    "looks_like_jwt",
]

_MAX_LEEWAY = 300.0
_MAX_KID = 128
_MAX_CACHE_SECONDS = 3600.0
_JWT_FIRST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


class InvalidTokenError(InvalidKeyError):
    """A presented access token is malformed, not ours, expired or not valid (answer 401)."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid access token")
        self.reason = reason


def looks_like_jwt(value: str) -> bool:
    """Return whether a presented credential has the shape of a compact JWS (``eyJ....``).

    API keys never contain ``.``, so the two never overlap.

    Args:
        value: the presented credential.
    """
    return value.startswith("eyJ") and value.count(".") == 2


@dataclass(slots=True, eq=False)
class VerifiedToken:
    """A token whose signature and claims were verified.

    Args:
        claims: the claims.
        issuer: the ``iss`` value.
        subject: the ``sub`` value.
        token_id: the ``jti``, if any.
        expires_at: the ``exp``.
        scopes: the token's scopes (``scope``, or the provider's configured claims).
        external: True when an external identity provider issued it.
        principal: for external tokens, the principal from the claims mapping.
        memo: the caller's cache slot (the key principal derived from this token).
    """

    claims: Mapping[str, Any]
    issuer: str
    subject: str
    token_id: str | None
    expires_at: float
    scopes: frozenset[str]
    external: bool = False
    principal: Principal | None = None
    memo: Any = None


class _Entry:
    __slots__ = ("source", "token", "until", "version")

    def __init__(self, token: VerifiedToken, until: float, source: KeySource, version: int):
        self.token = token
        self.until = until
        self.source = source
        self.version = version


class TokenVerifier:
    """Verify JWT access tokens of our issuer and of configured external identity providers.

    Args:
        issuer: our issuer (the ``iss`` our token endpoint writes); None: external tokens only.
        audience: the ``aud`` our tokens must carry (default: ``issuer``).
        keys: our public keys: a JWKS dict, a joserfc ``KeySet``/list of keys, a callable
            returning one (rotation, e.g. ``signing.jwks``), a
            :class:`~extapi_kit.oauth.SigningKeys`, or a :class:`KeySource`.
        algorithms: our accepted algorithms (default EdDSA and ES256).
        hmac_secret: a shared secret (>= 32 bytes) that enables HS256/384/512 for our issuer;
            without it no HMAC token is ever accepted.
        types: accepted ``typ`` values for our tokens (default ``at+jwt``).
        external: external identity providers to trust.
        leeway: clock skew allowed on ``exp``/``nbf``/``iat``, seconds (at most 300).
        cache_size: verified tokens kept (0 disables the cache).
        max_token_length: longer tokens are refused unread.
        clock: epoch seconds.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        keys: KeysLike | KeySource | PublishesJWKS | Callable[[], Any] | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        hmac_secret: bytes | str | None = None,
        types: Sequence[str] = ACCESS_TOKEN_TYPES,
        external: Iterable[ExternalIssuer] = (),
        leeway: float = 30.0,
        cache_size: int = 10_000,
        max_token_length: int = 8192,
        clock: Clock = time.time,
    ) -> None:
        if not 0 <= leeway <= _MAX_LEEWAY:
            raise ConfigurationError(f"leeway must be within 0..{_MAX_LEEWAY:g} seconds")
        if cache_size < 0 or max_token_length < 64:
            raise ConfigurationError("cache_size or max_token_length out of range")
        self.leeway = float(leeway)
        self.cache_size = cache_size
        self.max_token_length = max_token_length
        self._clock = clock
        self._issuers: dict[str, Trusted] = {}
        self._owned: list[RemoteJWKS] = []
        if issuer is not None:
            if keys is None and hmac_secret is None:
                raise ConfigurationError("TokenVerifier(issuer=...) needs keys= (our public keys)")
            self._issuers[issuer] = ours(
                issuer, audience or issuer, keys, algorithms, hmac_secret, types
            )
        for ext in external:
            if ext.issuer in self._issuers:
                raise ConfigurationError(f"issuer {ext.issuer!r} is configured twice")
            self._issuers[ext.issuer], remote = external_issuer(ext)
            if remote is not None:
                self._owned.append(remote)
        if not self._issuers:
            raise ConfigurationError("TokenVerifier needs issuer= or at least one external issuer")
        self._mac_key = secrets.token_bytes(32)
        self._cache: dict[bytes, _Entry] = {}
        self._failures = telemetry.counter("extapi.auth.token_failures", "Refused access tokens")

    def __repr__(self) -> str:
        return f"TokenVerifier(issuers={sorted(self._issuers)})"

    @property
    def issuers(self) -> tuple[str, ...]:
        """The trusted ``iss`` values."""
        return tuple(self._issuers)

    def digest(self, token: str) -> bytes:
        """Return the cache key of a token (a keyed BLAKE2b; the token itself is never kept).

        Args:
            token: the presented token.
        """
        return hashlib.blake2b(
            token.encode("ascii", "replace"), key=self._mac_key, digest_size=32
        ).digest()

    async def verify(self, token: str) -> VerifiedToken:
        """Verify a token and return its claims.

        Args:
            token: the compact JWS as presented.

        Raises:
            InvalidTokenError: the token is not valid (answer 401).
            JWKSUnavailableError: an external provider's keys could not be fetched (answer 503).
        """
        if not isinstance(token, str) or len(token) > self.max_token_length:
            self._fail("malformed")
        now = self._clock()
        digest = self.digest(token)
        entry = self._cache.get(digest)
        if entry is not None:
            if now < entry.until and entry.version == entry.source.version:
                return entry.token
            del self._cache[digest]
        verified, source, version = await self._verify(token, now)
        if self.cache_size:
            while len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
            until = min(verified.expires_at + self.leeway, now + _MAX_CACHE_SECONDS)
            self._cache[digest] = _Entry(verified, until, source, version)
        return verified

    def forget(self, token: str) -> None:
        """Drop one token from the cache (it is verified again on its next use).

        Args:
            token: the presented token.
        """
        self._cache.pop(self.digest(token), None)

    async def _verify(self, token: str, now: float) -> tuple[VerifiedToken, KeySource, int]:
        raw = token.encode("ascii", "replace")
        if not _JWT_FIRST.issuperset(raw) or raw.count(b".") != 2:
            self._fail("malformed")
        try:
            obj = jws.extract_compact(raw)
            header = obj.headers()
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, TypeError):
            self._fail("malformed")
        if not isinstance(claims, dict) or not isinstance(header, dict):
            self._fail("malformed")
        iss = claims.get("iss")
        trusted = self._issuers.get(iss) if isinstance(iss, str) else None
        if trusted is None:
            self._fail("issuer")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in trusted.algorithms:
            self._fail("algorithm")
        typ = header.get("typ")
        if not isinstance(typ, str) or norm_type(typ) not in trusted.types:
            self._fail("type")
        source = trusted.keys
        version = source.version
        key = await self._key(trusted, alg, header.get("kid"))
        try:
            ok = jws.validate_compact(obj, key, registry=trusted.registry)
        except (JoseError, ValueError, TypeError):
            ok = False
        if not ok:
            self._fail("signature")
        exp = self._check_times(claims, now)
        if not trusted.audiences & audiences(claims.get("aud"), strict=False):
            self._fail("audience")
        jti = claims.get("jti")
        token_id = jti if isinstance(jti, str) and 0 < len(jti) <= 255 else None
        sub = claims.get("sub")
        if trusted.claims is None:
            # Our own token: sub is the key id, and client_id (RFC 9068 §2.2) must agree.
            client_id = claims.get("client_id", sub)
            if not isinstance(sub, str) or not sub or client_id != sub:
                self._fail("subject")
            return (
                VerifiedToken(
                    claims, trusted.issuer, sub, token_id, exp, parse_scopes(claims.get("scope"))
                ),
                source,
                version,
            )
        principal = trusted.claims.principal(claims, token_id=token_id)
        if principal is None:
            self._fail("subject")
        verified = VerifiedToken(
            claims,
            trusted.issuer,
            sub if isinstance(sub, str) else principal.name,
            token_id,
            exp,
            principal.scopes,
            external=True,
            principal=principal,
        )
        return verified, source, version

    async def _key(self, trusted: Trusted, alg: str, kid: Any) -> Key:
        if alg in HMAC_ALGORITHMS:
            if trusted.hmac_key is None:  # unreachable: HS* is only allowed with a secret
                self._fail("algorithm")
            return trusted.hmac_key
        if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID or not kid.isprintable():
            self._fail("kid")
        key = await trusted.keys.find(kid)
        if key is None:
            self._fail("kid")
        if not key_fits(key, alg):
            self._fail("key-type")
        return key

    def _check_times(self, claims: Mapping[str, Any], now: float) -> float:
        exp = claims.get("exp")
        if not _number(exp):
            self._fail("exp")
        if now >= exp + self.leeway:
            self._fail("expired")
        nbf = claims.get("nbf")
        if nbf is not None and (not _number(nbf) or now + self.leeway < nbf):
            self._fail("not-yet-valid")
        iat = claims.get("iat")
        if iat is not None and (not _number(iat) or now + self.leeway < iat):
            self._fail("issued-in-future")
        return float(exp)

    def _fail(self, reason: str) -> NoReturn:
        self._failures.add(1, {"reason": reason})
        raise InvalidTokenError(reason)

    async def aclose(self) -> None:
        """Close the JWKS fetchers this verifier created."""
        for remote in self._owned:
            await remote.aclose()


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
