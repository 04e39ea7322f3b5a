"""The per-request context shared by every extapi_kit middleware.

Whichever middleware sees a request first creates a :class:`RequestContext` and stores it at
``scope["extapi_kit"]`` (:data:`SCOPE_KEY`). Every later layer reads and writes the same object,
so the rate limiter keys on the key that auth verified, and the audit record carries every
decision without any layer re-deriving what another already decided (DESIGN §3).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extapi_kit._types import Scope

__all__ = [
    "SCOPE_KEY",
    "Principal",
    "RateLimitInfo",
    "RequestContext",
    "RouteSettings",
    "get_context",
    "has_scope",
    "is_reserved_scope",
    "scope_matches",
]

SCOPE_KEY = "extapi_kit"


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity an authenticated API key stands for.

    Args:
        key_id: the public key id (safe to log).
        prefix: the key's public display prefix, e.g. ``"xk_live_ab12cd"`` (never the secret).
        env: the key's environment segment (``"live"``, ``"test"``, ...).
        name: the human name of the key.
        owner: the owner or tenant id, if any.
        scopes: the scopes granted to the key.
        grants: resource grants: resource type -> granted ids (``"*"`` means all).
        rate_limits: per-key rate-limit overrides, e.g. ``{"read": "500/minute"}``.
        allowed_cidrs: networks the key may be used from (empty: anywhere).
        quota: per-key usage quota settings, if any.
        metadata: free-form metadata stored on the key.
        lineage_id: the id of the first key of its rotation chain (empty: ``key_id``); a rotated
            key and its successors share it, so records scoped by it survive rotation (I6).
        auth: how the request authenticated: ``"key"`` (an API key) or ``"token"`` (a JWT
            access token, issue 19).
        token_id: the access token's ``jti`` when ``auth`` is ``"token"`` (safe to log).
        plan: the plan (tier) the key is on, its own or its owner's (issue 20); its limits,
            quotas and scope ceiling are already merged into the fields above.
        body_limit: the largest request body in bytes this principal may send (its plan's), or
            None. It can only lower the limit checked before authentication, never raise it.
    """

    key_id: str
    prefix: str = ""
    env: str = ""
    name: str = ""
    owner: str | None = None
    scopes: frozenset[str] = frozenset()
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    allowed_cidrs: tuple[str, ...] = ()
    quota: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    lineage_id: str = ""
    auth: str = "key"
    token_id: str | None = None
    plan: str | None = None
    body_limit: int | None = None

    def has_scope(self, required: str) -> bool:
        """Return whether this principal holds ``required`` (wildcards allowed).

        Args:
            required: the scope a route needs, e.g. ``"projects:read"``.
        """
        return has_scope(self.scopes, required)


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """Settings a matched route imposes on the stack (filled by the route registry).

    Args:
        template: the public path template (``"/api/v1/projects/{id}"``).
        method: the matched HTTP method.
        scopes: scopes a key must hold (all of them).
        rate_class: ``"read"``, ``"write"`` or a custom class name; None = by method.
        cost: rate-limit cost of one call.
        body_limit: maximum request body in bytes, None = the middleware default.
        idempotent: whether ``Idempotency-Key`` handling applies.
        public: whether unauthenticated calls are allowed.
        ip_allow: per-route allowed networks (empty: no route-level restriction).
        path_params: the path parameters extracted by the match.
        extra: anything else a route declares (resource parameters, ...).
    """

    template: str
    method: str = "GET"
    scopes: tuple[str, ...] = ()
    rate_class: str | None = None
    cost: int = 1
    body_limit: int | None = None
    idempotent: bool = False
    public: bool = False
    ip_allow: tuple[str, ...] = ()
    path_params: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RateLimitInfo:
    """The rate limiter's decision for one request.

    Args:
        policy: the name of the policy that decided (or was closest to its limit).
        limit: that policy's limit.
        remaining: requests left in its window.
        reset_after: seconds until the window resets.
        allowed: whether the request was admitted.
        degraded: True when decided by the in-process fallback because the storage failed.
    """

    policy: str
    limit: int
    remaining: int
    reset_after: float
    allowed: bool = True
    degraded: bool = False


@dataclass(slots=True)
class RequestContext:
    """Everything the stack decided about one request.

    Args:
        request_id: the request id (echoed as ``X-Request-ID`` by the audit layer).
        client_ip: the resolved client address (trusted proxies only), or None.
        route: the matched route's settings, when a registry is in use.
        principal: the authenticated key's principal, or None.
        rate_limit: the rate-limit decision, if one was made.
        idempotency: the idempotency outcome (``"stored"``, ``"replayed"``, ...), if any.
        rejection: the slug of the problem that rejected the request, if any.
        resource_ids: resource ids the request touches (type -> id), for audit.
        extra: free-form values other layers want recorded.
        quota: the quota decision when the rate limiter charged the quotas in its own Redis
            call (the usage layer then uses it instead of charging again), else None.
    """

    request_id: str = ""
    client_ip: str | None = None
    client_ip_resolved: bool = False
    route: RouteSettings | None = None
    principal: Principal | None = None
    rate_limit: RateLimitInfo | None = None
    idempotency: str | None = None
    rejection: str | None = None
    resource_ids: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    quota: Any = None


def new_request_id() -> str:
    """Return a fresh random request id (128 bits, hex)."""
    return secrets.token_hex(16)


def get_context(scope: Scope) -> RequestContext:
    """Return the request's context, creating it on first use.

    Args:
        scope: the ASGI scope of an ``http`` or ``websocket`` request.
    """
    ctx = scope.get(SCOPE_KEY)
    if ctx is None:
        ctx = RequestContext()
        scope[SCOPE_KEY] = ctx
    return ctx


RESERVED_SEGMENT = "admin"


def is_reserved_scope(scope: str) -> bool:
    """Return whether ``scope`` is reserved: held only by name, never through a wildcard.

    A scope is reserved when one of its ``:``-separated segments is ``admin`` (``admin``,
    ``admin:keys``, ``ops:admin``): the admin API's scope and its relatives. A key with ``*``
    (the "full access" profile) or ``admin:*`` does not hold them (case A14).

    Args:
        scope: a scope string.
    """
    return RESERVED_SEGMENT in scope.split(":")


def scope_matches(granted: str, required: str) -> bool:
    """Return whether one granted scope covers a required scope.

    ``*`` covers everything except reserved scopes (:func:`is_reserved_scope`, which match only
    exactly); ``projects:*`` covers ``projects:read`` and ``projects:write:own``; otherwise the
    strings must be equal.

    Args:
        granted: a scope held by a key.
        required: the scope a route needs.
    """
    if granted == required:
        return True
    if is_reserved_scope(required):
        return False  # A14: wildcards never grant the admin API
    if granted == "*":
        return True
    if granted.endswith(":*"):
        return required.startswith(granted[:-1])
    return False


def has_scope(granted: frozenset[str] | set[str] | tuple[str, ...], required: str) -> bool:
    """Return whether any granted scope covers ``required``. Empty grants cover nothing (A8).

    Args:
        granted: the scopes held.
        required: the scope needed.
    """
    if required in granted:
        return True
    return any(scope_matches(g, required) for g in granted)
