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

Unknown paths are not rejected by the resolver: they travel through auth like any other request,
so an unauthenticated probe gets the same 401 for a real and an invented path (no route
enumeration, case Z4); an authenticated one gets the router's 404 or 405.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from extapi_kit._types import ASGIApp
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.router import RouteResolverMiddleware

if TYPE_CHECKING:
    from extapi_kit.routing.api import ExternalAPI

__all__ = ["LAYER_ORDER", "StackSettings", "build"]

LAYER_ORDER = (
    "audit",
    "body_limit",
    "ip_allowlist",
    "api_key",
    "rate_limit",
    "usage",
    "idempotency",
)
_CLASSES = {
    "audit": "extapi_kit.middleware.audit:AuditMiddleware",
    "body_limit": "extapi_kit.middleware.body_limit:BodySizeLimitMiddleware",
    "ip_allowlist": "extapi_kit.middleware.ip_allowlist:IPAllowlistMiddleware",
    "api_key": "extapi_kit.middleware.api_key:ApiKeyMiddleware",
    "rate_limit": "extapi_kit.middleware.rate_limit:RateLimitMiddleware",
    "usage": "extapi_kit.middleware.usage:UsageMiddleware",
    "idempotency": "extapi_kit.middleware.idempotency:IdempotencyMiddleware",
}


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Settings of the stack :func:`build` assembles; every keyword of ``build`` overrides one.

    Args:
        key_store: key store URL, ``KeyStore`` or ``KeyService`` (required unless ``auth=False``).
        auth: set False to build without authentication (every route then acts as public).
        rate_limit_storage: rate-limit storage URL or object; None disables rate limiting.
        audit_sink: audit sink URL or object; None disables the audit layer.
        idempotency_store: idempotency store URL or object; None disables idempotency.
        usage: a :class:`~extapi_kit.usage.UsageTracker` (shared, e.g. with the admin API), a
            usage store URL or ``UsageStore``; None disables usage counting and quotas.
        body_limit: default request body cap (``"1MiB"``); None disables the layer.
        ip_allow: globally allowed networks.
        ip_deny: globally denied networks.
        trusted_proxies: proxies whose forwarding headers are believed (one shared resolver).
        read: default limit of the ``read`` rate class.
        write: default limit of the ``write`` rate class.
        failure_mode: rate limiter policy when its storage fails (``"open"``/``"closed"``).
        options: extra keyword arguments per layer, e.g. ``{"audit": {"clock": clock}}``.
        layers: replacement classes per layer name (tests, or your own implementation).
    """

    key_store: Any = None
    auth: bool = True
    rate_limit_storage: Any = None
    audit_sink: Any = None
    idempotency_store: Any = None
    usage: Any = None
    body_limit: int | str | None = "1MiB"
    ip_allow: Sequence[str] = ()
    ip_deny: Sequence[str] = ()
    trusted_proxies: Sequence[str] = ()
    read: str = "100/minute"
    write: str = "20/minute"
    failure_mode: str = "open"
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers: Mapping[str, Any] = field(default_factory=dict)


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
    api: ExternalAPI, s: StackSettings, resolver: ClientIPResolver
) -> list[tuple[str, dict[str, Any]]]:
    plan: list[tuple[str, dict[str, Any]]] = []
    if s.audit_sink is not None:
        plan.append(("audit", {"sink": s.audit_sink, "client_ip": resolver}))
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
        plan.append(("api_key", {"store": s.key_store, "client_ip": resolver}))
    if s.rate_limit_storage is not None:
        plan.append(
            (
                "rate_limit",
                {
                    "storage": s.rate_limit_storage,
                    "read": s.read,
                    "write": s.write,
                    "failure_mode": s.failure_mode,
                    "client_ip": resolver,
                },
            )
        )
    if s.usage is not None:
        plan.append(("usage", _usage_kwargs(s.usage)))
    if s.idempotency_store is not None:
        plan.append(("idempotency", {"store": s.idempotency_store}))
    return plan


def build(api: ExternalAPI, **overrides: Any) -> ASGIApp:
    """Return the registry wrapped in the recommended middleware stack.

    Args:
        api: the registry.
        **overrides: :class:`StackSettings` fields overriding ``api.settings``.

    Raises:
        ConfigurationError: for an unknown option, a missing key store, or a missing layer.
    """
    known = {f.name for f in fields(StackSettings)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigurationError(f"unknown build() options: {', '.join(sorted(unknown))}")
    base = api.settings or StackSettings()
    values = {f.name: getattr(base, f.name) for f in fields(StackSettings)}
    values.update(overrides)
    settings = StackSettings(**values)
    if api._router is None:
        api.idempotency_enabled = settings.idempotency_store is not None
    router = api.router
    resolver = ClientIPResolver(settings.trusted_proxies)
    router.client_ip = resolver
    app: ASGIApp = router
    closers: list[Callable[[], Awaitable[None]]] = []
    for name, kwargs in reversed(_plan(api, settings, resolver)):
        kwargs.update(settings.options.get(name, {}))
        app = _layer_class(name, settings)(app, **kwargs)
        # The audit layer flushes and closes itself on lifespan shutdown; the others close the
        # stores they created from URLs only when told to, so the stack tells them.
        aclose = getattr(app, "aclose", None)
        if name != "audit" and callable(aclose):
            closers.append(aclose)
    return RouteResolverMiddleware(app, router=router, closers=closers)
