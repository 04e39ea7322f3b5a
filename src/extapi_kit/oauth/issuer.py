"""``TokenIssuer``: exchange an API key for a short-lived JWT access token (RFC 9068).

The client is authenticated by :meth:`KeyService.verify <extapi_kit.keys.KeyService.verify>`, the
very path every API call takes, so the failed-attempt throttle (A4, A16), revocation, expiry,
the key's environment and its network rules (CIDRs) apply to the token request exactly as they
apply to a call made with the key. The token then says who the key is::

    header  {"alg": "EdDSA" | "ES256", "typ": "at+jwt", "kid": "<signing key id>"}
    claims  iss, sub (= key id), aud, exp, iat, nbf, jti (128 random bits), client_id (= key id),
            scope (the key's scopes, narrowed by the requested scope, never widened),
            owner (when the key has one), grants (resource type -> ids)

A token never outlives its key: ``exp`` is capped at the key's expiry or the end of its rotation
grace. Revoking the key kills its tokens on the verify side (their ``sub`` is the key id).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from extapi_kit._types import Clock
from extapi_kit._units import parse_duration
from extapi_kit.clientip import IPNetworkSet
from extapi_kit.context import Principal, has_scope
from extapi_kit.exceptions import (
    ConfigurationError,
    ExtAPIKitError,
    InvalidKeyError,
    NotFoundError,
    StoreError,
)
from extapi_kit.keys.service import KeyService, KeyThrottledError
from extapi_kit.oauth.signing import SigningKeys

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "MIN_LIFETIME",
    "IssuedToken",
    "OAuthError",
    "TokenIssuer",
    "parse_scope",
]

DEFAULT_LIFETIME: Final = 900.0
MIN_LIFETIME: Final = 60.0
MAX_LIFETIME: Final = 24 * 3600.0
MAX_SCOPES: Final = 100
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}")


class OAuthError(ExtAPIKitError):
    """A token request refused with an RFC 6749 §5.2 error code.

    Args:
        error: the code (``invalid_request``, ``invalid_client``, ``invalid_grant``,
            ``unauthorized_client``, ``unsupported_grant_type``, ``invalid_scope``, or
            ``slow_down`` / ``temporarily_unavailable`` for throttling and outages).
        description: a human sentence (never a secret, the same for every cause of one code).
        status: the HTTP status.
        retry_after: seconds, sent as ``Retry-After`` with 429 and 503.
    """

    def __init__(
        self, error: str, description: str, *, status: int = 400, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.retry_after = retry_after


def invalid_client() -> OAuthError:
    """The one answer for an unknown, wrong, revoked, expired or malformed client credential."""
    return OAuthError("invalid_client", "Client authentication failed.", status=401)


def parse_scope(value: str) -> tuple[str, ...]:
    """Split a ``scope`` parameter (RFC 6749 §3.3) into scope tokens, in order, deduplicated.

    Args:
        value: space-separated scope tokens.

    Raises:
        OAuthError: ``invalid_scope`` for an empty, malformed or oversized value.
    """
    parts = [p for p in value.split(" ") if p]
    if not parts or len(parts) > MAX_SCOPES or not all(_SCOPE_TOKEN.fullmatch(p) for p in parts):
        raise OAuthError("invalid_scope", "The requested scope is malformed.")
    return tuple(dict.fromkeys(parts))


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An issued access token (the token itself is kept out of ``repr``).

    Args:
        access_token: the compact JWS.
        expires_in: seconds until it expires.
        expires_at: its ``exp`` (epoch seconds).
        scope: the granted scopes, space separated.
        jti: its unique id.
        key_id: the API key it stands for.
        kid: the signing key that signed it.
    """

    access_token: str = field(repr=False)
    expires_in: int
    expires_at: int
    scope: str
    jti: str
    key_id: str
    kid: str

    def response(self) -> dict[str, Any]:
        """Return the RFC 6749 §5.1 response body."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class TokenIssuer:
    """Issues RFC 9068 access tokens for API keys.

    Args:
        keys: the :class:`~extapi_kit.keys.KeyService` that authenticates clients (share the
            stack's, so its cache and failed-attempt throttle are the same).
        signing: the :class:`~extapi_kit.oauth.SigningKeys` tokens are signed with.
        issuer: the ``iss`` value, an ``https`` URL without query or fragment (RFC 8414 §2).
        audience: the ``aud`` value(s); default the issuer.
        lifetime: token lifetime (seconds or ``"15m"``), 60 s to 24 h; default 15 minutes.
        allow_client: ``fn(principal) -> bool``: may this key use the client credentials grant?
            False answers ``unauthorized_client``. Default: every valid key may.
        clock: epoch seconds.
    """

    def __init__(
        self,
        keys: KeyService,
        signing: SigningKeys,
        *,
        issuer: str,
        audience: str | Sequence[str] | None = None,
        lifetime: float | str = DEFAULT_LIFETIME,
        allow_client: Callable[[Principal], bool] | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
            raise ConfigurationError("issuer must be an https:// URL (http:// for local tests)")
        if "?" in issuer or "#" in issuer:
            raise ConfigurationError("issuer must not have a query or fragment (RFC 8414 §2)")
        self.keys = keys
        self.signing = signing
        self.issuer = issuer
        auds = [audience] if isinstance(audience, str) else list(audience or [issuer])
        if not auds or not all(isinstance(a, str) and a for a in auds):
            raise ConfigurationError("audience must be a non-empty string or list of strings")
        self.audience: str | list[str] = auds[0] if len(auds) == 1 else auds
        seconds = parse_duration(lifetime)
        if not MIN_LIFETIME <= seconds <= MAX_LIFETIME:
            raise ConfigurationError("token lifetime must be between 60 s and 24 h")
        if seconds > signing.retain:
            raise ConfigurationError("token lifetime is longer than the signing keys' retain")
        self.lifetime = seconds
        self._allow = allow_client
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenIssuer(issuer={self.issuer!r}, lifetime={self.lifetime:g})"

    async def authenticate(
        self, presented: str, *, client_id: str | None = None, client_ip: str | None = None
    ) -> Principal:
        """Verify a client's API key; return its principal.

        Args:
            presented: the API key (the client secret).
            client_id: the client id sent beside it, if any: must be the key's id.
            client_ip: the resolved client address (throttle, CIDR rules).

        Raises:
            OAuthError: ``invalid_client`` (401) for any unusable credential, ``slow_down``
                (429) when the failed-attempt throttle refuses this client,
                ``temporarily_unavailable`` (503) when the key store is down.
        """
        try:
            principal = await self.keys.verify(presented, client_ip=client_ip)
        except KeyThrottledError as exc:
            raise OAuthError(
                "slow_down",
                "Too many failed attempts; try again later.",
                status=429,
                retry_after=exc.retry_after,
            ) from None
        except InvalidKeyError:
            raise invalid_client() from None
        except StoreError:
            raise OAuthError(
                "temporarily_unavailable",
                "Authentication is temporarily unavailable.",
                status=503,
                retry_after=5,
            ) from None
        if client_id is not None and client_id != principal.key_id:
            raise invalid_client()
        if principal.allowed_cidrs and not IPNetworkSet(principal.allowed_cidrs).contains(
            client_ip
        ):
            # The key is authentic (like the API's 403 ip-not-allowed), but not from here.
            raise OAuthError(
                "unauthorized_client", "This client may not request tokens from this network."
            )
        if self._allow is not None and not self._allow(principal):
            raise OAuthError(
                "unauthorized_client", "This client may not use the client_credentials grant."
            )
        return principal

    async def issue(
        self,
        presented: str,
        *,
        scope: str | None = None,
        client_id: str | None = None,
        client_ip: str | None = None,
    ) -> IssuedToken:
        """Authenticate a client by its API key and issue a token.

        Args:
            presented: the API key.
            scope: the requested scope (space separated), or None for the key's scopes.
            client_id: the client id sent beside the key, if any.
            client_ip: the resolved client address.

        Raises:
            OAuthError: see ``authenticate()``; ``invalid_scope`` for a scope the key lacks.
        """
        requested = parse_scope(scope) if scope is not None else None
        principal = await self.authenticate(presented, client_id=client_id, client_ip=client_ip)
        return await self.issue_for(principal, scope=requested)

    async def issue_for(
        self, principal: Principal, *, scope: Iterable[str] | str | None = None
    ) -> IssuedToken:
        """Issue a token for an already authenticated key.

        Args:
            principal: the key's principal (from ``authenticate()`` or ``KeyService.verify``).
            scope: requested scopes (a subset of the key's; wildcards only where the key's cover
                them); None for the key's scopes.

        Raises:
            OAuthError: ``invalid_scope`` when a requested scope is not held by the key.
        """
        if isinstance(scope, str):
            scope = parse_scope(scope)
        granted = _narrow(principal.scopes, scope)
        now = int(self._clock())
        exp = now + int(self.lifetime)
        until = await self._key_valid_until(principal.key_id)
        if until is not None:
            exp = min(exp, int(until))
        if exp <= now:
            raise invalid_client()
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": principal.key_id,
            "aud": self.audience,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": jti,
            "client_id": principal.key_id,
            "scope": " ".join(granted),
            "grants": {kind: sorted(ids) for kind, ids in sorted(principal.grants.items())},
        }
        if principal.owner is not None:
            claims["owner"] = principal.owner
        signing_key = await self.signing.current()
        token = await self.signing.sign(claims)
        return IssuedToken(
            access_token=token,
            expires_in=exp - now,
            expires_at=exp,
            scope=claims["scope"],
            jti=jti,
            key_id=principal.key_id,
            kid=signing_key.kid,
        )

    async def _key_valid_until(self, key_id: str) -> float | None:
        try:
            record = await self.keys.get(key_id)
        except NotFoundError:
            raise invalid_client() from None
        return record.valid_until()

    def metadata(self, *, token_path: str, jwks_path: str) -> dict[str, Any]:
        """Return RFC 8414 authorization server metadata for this issuer.

        Args:
            token_path: path of the token endpoint on the issuer's host.
            jwks_path: path of the JWKS.
        """
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "token_endpoint": base + token_path,
            "jwks_uri": base + jwks_path,
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": [],
        }


def _narrow(held: frozenset[str], requested: Iterable[str] | None) -> tuple[str, ...]:
    if requested is None:
        return tuple(sorted(held))
    wanted = tuple(requested)
    if not all(has_scope(held, s) for s in wanted):
        # Never widen (RFC 6749 §3.3): one scope the key lacks refuses the whole request.
        raise OAuthError("invalid_scope", "The requested scope exceeds the client's scopes.")
    return wanted
