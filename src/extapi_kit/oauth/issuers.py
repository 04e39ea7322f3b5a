"""Who the token verifier trusts: our own issuer and external identity providers.

Each trusted issuer has its own audiences, key source, algorithm allowlist, accepted ``typ``
values and (for an external provider) claims mapping; a token is judged only by the rules of the
issuer it names, so a key of one issuer never vouches for a token claiming another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import OctKey

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.oauth.claims import ClaimsMapping
from extapi_kit.oauth.jwks_remote import RemoteJWKS
from extapi_kit.oauth.keysets import JWSAllowlist, KeySource, LocalKeys

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "DEFAULT_ALGORITHMS",
    "EXTERNAL_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "ExternalIssuer",
    "Trusted",
    "audiences",
    "external",
    "norm_type",
    "ours",
]

DEFAULT_ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256")
# What identity providers sign with: Entra ID and Auth0 default to RS256. Asymmetric only.
EXTERNAL_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
ACCESS_TOKEN_TYPES: tuple[str, ...] = ("at+jwt",)
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_KNOWN = frozenset({"EdDSA", "Ed25519", "ES256", "ES384", "RS256", "PS256"}) | HMAC_ALGORITHMS
_MIN_HMAC_SECRET = 32


@dataclass(frozen=True, slots=True)
class ExternalIssuer:
    """An external identity provider whose access tokens the API accepts.

    Args:
        issuer: the exact ``iss`` value (``https://tenant.eu.auth0.com/``, trailing slash and all).
        audience: the ``aud`` value(s) identifying this API at the provider.
        claims: how claims become the principal (:class:`ClaimsMapping`).
        jwks_url: the provider's JWKS URL (fetched with :class:`RemoteJWKS`).
        keys: a ready key source instead of ``jwks_url`` (tests, pinned keys).
        algorithms: accepted algorithms (asymmetric only).
        types: accepted ``typ`` header values; Okta, Keycloak and Entra ID send ``"JWT"``.
        jwks_options: keyword arguments for :class:`RemoteJWKS` (``deadline``, ``min_ttl``, ...).
    """

    issuer: str
    audience: str | Sequence[str]
    claims: ClaimsMapping
    jwks_url: str | None = None
    keys: KeySource | None = None
    algorithms: Sequence[str] = EXTERNAL_ALGORITHMS
    types: Sequence[str] = ACCESS_TOKEN_TYPES
    jwks_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Trusted:
    """What one trusted issuer accepts: audiences, keys, algorithms, types, claims mapping."""

    issuer: str
    audiences: frozenset[str]
    keys: KeySource
    algorithms: frozenset[str]
    types: frozenset[str]
    registry: JWSAllowlist
    claims: ClaimsMapping | None  # None: our own issuer (the principal comes from the key)
    hmac_key: OctKey | None = None


def ours(
    issuer: str,
    audience: str | Sequence[str],
    keys: Any,
    algorithms: Sequence[str],
    hmac_secret: bytes | str | None,
    types: Sequence[str],
) -> Trusted:
    """Return the trust settings of our own issuer.

    Args:
        issuer: our ``iss``.
        audience: our audience(s).
        keys: our public keys (see :class:`~extapi_kit.oauth.verify.TokenVerifier`).
        algorithms: accepted algorithms.
        hmac_secret: the shared secret enabling HS*, if any.
        types: accepted ``typ`` values.
    """
    algs = _algorithms(algorithms, allow_hmac=hmac_secret is not None)
    hmac_key = None
    if hmac_secret is not None:
        raw = hmac_secret.encode() if isinstance(hmac_secret, str) else hmac_secret
        if len(raw) < _MIN_HMAC_SECRET:
            raise ConfigurationError(f"hmac_secret must hold >= {_MIN_HMAC_SECRET} bytes")
        hmac_key = OctKey.import_key(raw)
        algs |= HMAC_ALGORITHMS & set(algorithms) or {"HS256"}
    if callable(getattr(keys, "jwks", None)):
        keys = keys.jwks  # a SigningKeys: read its published JWKS (rotation included)
    source = (
        keys if hasattr(keys, "find") else LocalKeys(keys if keys is not None else {"keys": []})
    )
    return Trusted(
        issuer=issuer,
        audiences=audiences(audience),
        keys=source,
        algorithms=frozenset(algs),
        types=_types(types),
        registry=JWSAllowlist(algorithms=sorted(algs)),
        claims=None,
        hmac_key=hmac_key,
    )


def external(ext: ExternalIssuer) -> tuple[Trusted, RemoteJWKS | None]:
    """Return the trust settings of an external provider (and the JWKS fetcher it needs).

    Args:
        ext: the provider.
    """
    source: KeySource
    remote = None
    if ext.keys is not None and ext.jwks_url is None:
        source = ext.keys
    elif ext.jwks_url is not None and ext.keys is None:
        remote = RemoteJWKS(ext.jwks_url, **dict(ext.jwks_options))
        source = remote
    else:
        raise ConfigurationError(f"external issuer {ext.issuer!r}: give jwks_url= or keys=")
    algs = _algorithms(ext.algorithms, allow_hmac=False)
    trusted = Trusted(
        issuer=ext.issuer,
        audiences=audiences(ext.audience),
        keys=source,
        algorithms=frozenset(algs),
        types=_types(ext.types),
        registry=JWSAllowlist(algorithms=sorted(algs)),
        claims=ext.claims,
    )
    return trusted, remote


def norm_type(value: str) -> str:
    """Return a ``typ`` value lower-cased, without ``application/``.

    Args:
        value: the header value.
    """
    # RFC 9068 §2.1 / RFC 7515 §4.1.9: "at+jwt" and "application/at+jwt", case-insensitive.
    value = value.lower()
    return value[12:] if value.startswith("application/") else value


def _types(types: Sequence[str]) -> frozenset[str]:
    if isinstance(types, str):
        types = [types]
    out = frozenset(norm_type(t) for t in types)
    if not out:
        raise ConfigurationError("at least one accepted typ is needed")
    return out


def audiences(value: Any, *, strict: bool = True) -> frozenset[str]:
    """Return the audiences of a setting (strict: refuse none) or of an ``aud`` claim.

    Args:
        value: a string or a list of strings.
        strict: raise ConfigurationError instead of returning an empty set.
    """
    if isinstance(value, str):
        return frozenset({value}) if value else frozenset()
    if isinstance(value, list | tuple | frozenset | set):
        out = frozenset(v for v in value if isinstance(v, str) and v)
        if strict and not out:
            raise ConfigurationError("an audience is needed")
        return out
    if strict:
        raise ConfigurationError(f"invalid audience {value!r}")
    return frozenset()


def _algorithms(algorithms: Sequence[str], *, allow_hmac: bool) -> set[str]:
    if isinstance(algorithms, str):
        algorithms = [algorithms]
    algs = set(algorithms)
    unknown = algs - _KNOWN
    if unknown:
        raise ConfigurationError(f"unsupported or unsafe algorithms: {sorted(unknown)}")
    hmac = algs & HMAC_ALGORITHMS
    if hmac and not allow_hmac:
        raise ConfigurationError(
            "HS* algorithms need hmac_secret= (and never for external issuers)"
        )
    algs -= HMAC_ALGORITHMS
    if not algs and not allow_hmac:
        raise ConfigurationError("no algorithm allowed")
    return algs
