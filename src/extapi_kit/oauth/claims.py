"""Mapping the claims of an external identity provider's access token to a :class:`Principal`.

Identity providers disagree on where they put the client and its permissions:

============  =====================  ==========================================
provider      the client             permissions
============  =====================  ==========================================
Auth0         ``azp`` (``sub`` is    ``scope`` (space separated), ``permissions``
              ``<client>@clients``)  (list) with RBAC
Okta          ``cid``                ``scp`` (list)
Keycloak      ``azp`` / ``client_id``  ``scope`` (space separated)
Entra ID      ``azp`` (v2), ``appid``  ``roles`` (list) for client credentials,
              (v1)                   ``scp`` (space separated) for delegated
============  =====================  ==========================================

:class:`ClaimsMapping` names, in order of preference, the claims to read. The principal's key id
is ``<name>:<client>`` where ``name`` is the short name given to the issuer: never one of our own
key ids (those have no ``:``), so an external client never shares a rate-limit budget or the
idempotency records of an API key, whatever its provider calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from extapi_kit.context import Principal, has_scope
from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_CLIENT_CLAIMS",
    "DEFAULT_SCOPE_CLAIMS",
    "ClaimsMapping",
    "narrow_scopes",
    "parse_scopes",
]

DEFAULT_CLIENT_CLAIMS: tuple[str, ...] = ("client_id", "azp", "cid", "appid", "sub")
DEFAULT_SCOPE_CLAIMS: tuple[str, ...] = ("scope", "scp")
_MAX_SCOPES = 256
_MAX_SCOPE_LENGTH = 200


def parse_scopes(value: Any) -> frozenset[str]:
    """Return the scopes of a claim value: a space-separated string or a list of strings.

    Anything else (numbers, objects, lists of non-strings) yields no scope rather than an error:
    a principal with fewer scopes is refused by the route's scope check (403), never widened.

    Args:
        value: the claim's value.
    """
    if isinstance(value, str):
        items: Iterable[Any] = value.split()
    elif isinstance(value, list):
        items = value
    else:
        return frozenset()
    out = {s for s in items if isinstance(s, str) and s and len(s) <= _MAX_SCOPE_LENGTH}
    if len(out) > _MAX_SCOPES:
        return frozenset()
    return frozenset(s for s in out if " " not in s)


def _grants(value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, frozenset[str]] = {}
    for kind, ids in value.items():
        if isinstance(kind, str) and isinstance(ids, list):
            out[kind] = frozenset(i for i in ids if isinstance(i, str))
    return out


@dataclass(frozen=True, slots=True)
class ClaimsMapping:
    """Which claims of an external token make the principal.

    Args:
        name: short name of the provider (``"auth0"``); the principal's key id is
            ``<name>:<client>``. Letters, digits, ``-``, ``_`` and ``.`` only.
        client_claims: claims holding the client id, first present wins.
        owner_claim: claim holding the owner or tenant id (e.g. ``"org_id"``, ``"tid"``); None:
            no owner.
        scope_claims: claims holding scopes (string or list); their scopes are merged.
        grants_claim: claim holding resource grants as ``{"type": ["id", ...]}``; None: no
            grants (routes that need a grant refuse).
        scope_prefix: only scopes starting with it are kept, with it removed (e.g. Entra's
            ``"api://my-api/"``); empty keeps all.
        rate_limits: per-principal rate-limit overrides for every client of this provider.
        quota: usage quota settings for every client of this provider.
    """

    name: str
    client_claims: tuple[str, ...] = DEFAULT_CLIENT_CLAIMS
    owner_claim: str | None = None
    scope_claims: tuple[str, ...] = DEFAULT_SCOPE_CLAIMS
    grants_claim: str | None = None
    scope_prefix: str = ""
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    quota: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigurationError(f"ClaimsMapping name must be [A-Za-z0-9._-]+: {self.name!r}")
        for attr in ("client_claims", "scope_claims"):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, (value,))
        if not self.client_claims:
            raise ConfigurationError("ClaimsMapping needs at least one client claim")

    def client(self, claims: Mapping[str, Any]) -> str | None:
        """Return the client id the token names, or None when no configured claim holds one.

        Args:
            claims: the verified claims.
        """
        for name in self.client_claims:
            value = claims.get(name)
            if isinstance(value, str) and 0 < len(value) <= 255:
                return value
        return None

    def scopes(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """Return the scopes the token carries, after ``scope_prefix``.

        Args:
            claims: the verified claims.
        """
        found: set[str] = set()
        for name in self.scope_claims:
            found |= parse_scopes(claims.get(name))
        if self.scope_prefix:
            n = len(self.scope_prefix)
            found = {s[n:] for s in found if s.startswith(self.scope_prefix) and len(s) > n}
        return frozenset(found)

    def principal(self, claims: Mapping[str, Any], *, token_id: str | None) -> Principal | None:
        """Return the principal for verified claims, or None when they name no client.

        Args:
            claims: the verified claims.
            token_id: the token's ``jti``.
        """
        client = self.client(claims)
        if client is None:
            return None
        owner = claims.get(self.owner_claim) if self.owner_claim else None
        return Principal(
            key_id=f"{self.name}:{client}",
            name=client,
            owner=owner if isinstance(owner, str) and owner else None,
            scopes=self.scopes(claims),
            grants=_grants(claims.get(self.grants_claim)) if self.grants_claim else {},
            rate_limits=dict(self.rate_limits),
            quota=dict(self.quota),
            auth="token",
            token_id=token_id,
        )


def narrow_scopes(
    key_scopes: Sequence[str] | frozenset[str], token_scopes: frozenset[str]
) -> frozenset[str]:
    """Return what both the key and the token allow (wildcards understood both ways).

    A token scope the key covers stays (``projects:read`` under a key with ``projects:*``); a key
    scope the token covers stays (``projects:read`` under a token with ``projects:*``). Reserved
    scopes are held only by name on both sides (A14).

    Args:
        key_scopes: the key's current scopes.
        token_scopes: the scopes in the token.
    """
    keys = frozenset(key_scopes)
    out = {s for s in token_scopes if has_scope(keys, s)}
    out |= {s for s in keys if has_scope(token_scopes, s)}
    return frozenset(out)
