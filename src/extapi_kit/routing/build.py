"""``build()``: the registry wrapped in the middleware stack, in the order DESIGN §3 fixes.

Outermost first::

    RouteResolver → Audit → BodySizeLimit → IPAllowlist → ApiKey → RateLimit → Usage
        → Idempotency → router

- The resolver matches once, so every layer reads the route's settings (scopes, rate class and
  cost, body limit, idempotency, public flag, per-route networks) from the request context.
- Audit is outermost of the middlewares so it sees every outcome and the whole latency.
- Body size and network checks are cheap rejections and run before any key work.
- Rate limiting runs after auth so it keys on the verified key id.
- Usage counting and quotas (issue 9) run inside the rate limiter, so a quota is charged (by the
  route's ``cost``) only for requests the per-minute limits admitted, and outside idempotency, so
  idempotency's refusals are counted too (a replayed answer counts and costs like a call).
- Idempotency runs last, scoped by the verified key id, right before the target executes.

Safe when the user writes the least (issue 18 §2): a setting left out is
:data:`~extapi_kit.routing.settings.DEFAULT`, not None. Left out, rate limiting is on
(in-process storage, 100 reads and 20 writes a minute per key) and a missing audit sink is
announced by one warning; ``None`` written explicitly disables either layer quietly.

Unknown paths are not rejected by the resolver: they travel through auth like any other request,
so an unauthenticated probe gets the same 401 for a real and an invented path (no route
enumeration, case Z4); an authenticated one gets the router's 404 or 405.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any

from extapi_kit._types import ASGIApp
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.registry import RouteRegistry
from extapi_kit.routing.router import RouteResolverMiddleware, router_of
from extapi_kit.routing.settings import (
    DEFAULT,
    DEFAULT_RATE_LIMIT_STORAGE,
    DEFAULT_READ,
    DEFAULT_WRITE,
    StackSettings,
)

__all__ = ["LAYER_ORDER", "StackSettings", "build"]

logger = logging.getLogger("extapi_kit.routing")

LAYER_ORDER = (
    "audit",
    "body_limit",
    "ip_allowlist",
    "api_key",
    "rate_limit",
    "usage",
    "credits",
    "idempotency",
)
_CLASSES = {
    "audit": "extapi_kit.middleware.audit:AuditMiddleware",
    "body_limit": "extapi_kit.middleware.body_limit:BodySizeLimitMiddleware",
    "ip_allowlist": "extapi_kit.middleware.ip_allowlist:IPAllowlistMiddleware",
    "api_key": "extapi_kit.middleware.api_key:ApiKeyMiddleware",
    "rate_limit": "extapi_kit.middleware.rate_limit:RateLimitMiddleware",
    "usage": "extapi_kit.middleware.usage:UsageMiddleware",
    "credits": "extapi_kit.credits.middleware:CreditsMiddleware",
    "idempotency": "extapi_kit.middleware.idempotency:IdempotencyMiddleware",
}


def _layer_class(name: str, settings: StackSettings) -> Any:
    if name in settings.layers:
        return settings.layers[name]
    module, _, attr = _CLASSES[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"middleware {_CLASSES[name]} is not available") from exc


def _usage_kwargs(usage: Any) -> dict[str, Any]:
    from extapi_kit.usage.tracker import UsageTracker

    # A tracker is shared (the admin API reads it), so the layer flushes but never closes it; a
    # URL or store becomes a tracker the layer owns and closes with the stack.
    if isinstance(usage, UsageTracker):
        return {"tracker": usage}
    return {"store": usage}


def _plan(
    api: RouteRegistry, s: StackSettings, resolver: ClientIPResolver
) -> list[tuple[str, dict[str, Any]]]:
    plan: list[tuple[str, dict[str, Any]]] = []
    if s.audit_sink is not None and s.audit_sink is not DEFAULT:
        sink = s.audit_sink
        if s.key_activity is not None:  # key analytics ride on the audit records (issue 20 §4)
            sink = [*(sink if isinstance(sink, list | tuple) else [sink]), s.key_activity]
        plan.append(("audit", {"sink": sink, "client_ip": resolver}))
    elif s.key_activity is not None:
        plan.append(("audit", {"sink": s.key_activity, "client_ip": resolver}))
    if s.body_limit is not None:
        plan.append(("body_limit", {"max_body": s.body_limit}))
    if s.ip_allow or s.ip_deny or any(r.ip_allow for r in api.routes):
        plan.append(
            ("ip_allowlist", {"allow": s.ip_allow, "deny": s.ip_deny, "client_ip": resolver})
        )
    if s.auth:
        if s.key_store is None:
            # Deny by default (A13): a stack without a key store would let everything through.
            raise ConfigurationError("build() needs key_store= (or auth=False to run without auth)")
        auth: dict[str, Any] = {"store": s.key_store, "client_ip": resolver}
        if s.token_verifier is not None:
            auth["token_verifier"] = s.token_verifier
        oauth_paths = getattr(api, "oauth_paths", ())
        if oauth_paths:
            # The token endpoint authenticates its clients itself (RFC 6749 §5.2 answers): the
            # key layer must not answer a wrong key sent there with its own 401 (issue 19).
            auth["exempt_paths"] = list(oauth_paths)
        plan.append(("api_key", auth))
    storage = s.rate_limit_storage
    if storage is None:
        given = [name for name in ("read", "write") if getattr(s, name) is not DEFAULT]
        if given:
            # Budgets that silently do nothing are worse than an error (issue 18 §2).
            raise ConfigurationError(
                f"build() got {' and '.join(f'{n}=' for n in given)} but rate_limit_storage=None "
                "disables rate limiting; remove read=/write=, or set rate_limit_storage= "
                "(leave it out for in-process storage, or 'redis://...' for shared limits)"
            )
    else:
        plan.append(
            (
                "rate_limit",
                {
                    "storage": _leased(
                        DEFAULT_RATE_LIMIT_STORAGE if storage is DEFAULT else storage,
                        s.rate_limit_leases,
                    ),
                    "read": DEFAULT_READ if s.read is DEFAULT else s.read,
                    "write": DEFAULT_WRITE if s.write is DEFAULT else s.write,
                    "failure_mode": s.failure_mode,
                    "client_ip": resolver,
                },
            )
        )
    if s.usage is not None:
        plan.append(("usage", _usage_kwargs(s.usage)))
    if s.credits is not None:
        # Inside rate limits and quotas: a request they refuse never spends a credit (issue 20).
        plan.append(("credits", {"ledger": s.credits}))
    if s.idempotency_store is not None:
        plan.append(("idempotency", {"store": s.idempotency_store}))
    return plan


def _leased(storage: Any, leases: Any) -> Any:
    # Local leases wrap a Redis or Redis Cluster URL (issue 16); anything else is a configuration
    # error.
    if leases is None or leases is False:
        return storage
    from extapi_kit.ratelimit.leases import DEFAULT_LEASE_BLOCK, LeasedRedis

    if isinstance(leases, LeasedRedis):
        return leases
    if not isinstance(storage, str):
        raise ConfigurationError(
            "rate_limit_leases= needs rate_limit_storage='redis://...' or 'redis+cluster://...', "
            "or pass a LeasedRedis as rate_limit_leases="
        )
    return LeasedRedis(storage, block=DEFAULT_LEASE_BLOCK if leases is True else leases)


def build(api: RouteRegistry, **overrides: Any) -> ASGIApp:
    """Return the registry wrapped in the recommended middleware stack.

    Args:
        api: the registry.
        **overrides: :class:`StackSettings` fields overriding ``api.settings``.

    Left out, ``rate_limit_storage`` is in-process storage (``"memory://"``) with ``read``
    100/minute and ``write`` 20/minute, and ``audit_sink`` is no audit layer with one warning
    (``extapi_kit.routing`` logger); ``None`` disables either quietly.

    Raises:
        ConfigurationError: for an unknown option, a missing key store, a missing layer, or
            ``read=``/``write=`` with ``rate_limit_storage=None``.
    """
    known = {f.name for f in fields(StackSettings)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigurationError(f"unknown build() options: {', '.join(sorted(unknown))}")
    base = api.settings or StackSettings()
    values = {f.name: getattr(base, f.name) for f in fields(StackSettings)}
    values.update(overrides)
    settings = StackSettings(**values)
    if api.compiled is None:
        api.idempotency_enabled = settings.idempotency_store is not None
        api.credits_enabled = settings.credits is not None
    router = router_of(api)
    resolver = ClientIPResolver(settings.trusted_proxies)
    router.client_ip = resolver
    app: ASGIApp = router
    closers: list[Callable[[], Awaitable[None]]] = []
    tracker: Any = None
    ledger: Any = None
    plan = _plan(api, settings, resolver)
    if settings.audit_sink is DEFAULT and settings.key_activity is None:
        # A logged warning, not warnings.warn: an operator reads it in the server log at start-up,
        # and the library's other configuration warnings go to its loggers too.
        logger.warning(
            "build(): no audit_sink= configured, so calls to %r are not audited. Pass "
            "audit_sink='sqlite:///audit.db' (or any sink) to record them, or audit_sink=None "
            "to run without an audit trail and silence this warning.",
            api.title,
        )
    for name, kwargs in reversed(plan):
        kwargs.update(settings.options.get(name, {}))
        if name == "rate_limit" and tracker is not None and name not in settings.layers:
            # One Redis round trip per request: the rate limiter charges the usage layer's
            # quotas in its own script when both are on the same Redis.
            kwargs.setdefault("quotas", tracker)
        if name == "rate_limit" and ledger is not None and name not in settings.layers:
            # The same for credits: spent in the rate limiter's script on a shared Redis.
            kwargs.setdefault("credits", ledger)
        app = _layer_class(name, settings)(app, **kwargs)
        if name == "usage":
            tracker = getattr(app, "tracker", None)
        elif name == "credits":
            ledger = getattr(app, "ledger", None)
        # The audit layer flushes and closes itself on lifespan shutdown; the others close the
        # stores they created from URLs only when told to, so the stack tells them.
        aclose = getattr(app, "aclose", None)
        if name != "audit" and callable(aclose):
            closers.append(aclose)
    flush_activity = getattr(settings.key_activity, "flush", None)
    if callable(flush_activity):
        # Runs after the audit layer delivered its last records (it flushes before answering
        # the shutdown), so the key analytics of the last second are written too.
        closers.append(flush_activity)
    return RouteResolverMiddleware(app, router=router, closers=closers)
