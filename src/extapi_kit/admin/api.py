"""The admin API (``/admin/v1``), built with the toolkit itself, and the one-app helper.

:func:`create_admin_api` returns an :class:`~extapi_kit.routing.ExternalAPI` whose handler routes
all require the admin scope, so the admin surface gets the same validation, problem+json answers,
OpenAPI document, audit trail and key checks as any public API. :func:`admin_app` builds it and
puts the console next to it in one ASGI app.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from extapi_kit._types import ASGIApp, Clock, Receive, Scope, Send
from extapi_kit.admin.audit_routes import AuditAccess, add_audit_routes
from extapi_kit.admin.console import ConsoleApp
from extapi_kit.admin.keys_routes import add_key_routes
from extapi_kit.admin.usage_routes import add_usage_routes
from extapi_kit.admin.webhook_routes import add_webhook_routes
from extapi_kit.audit.sink_base import AuditSink
from extapi_kit.context import is_reserved_scope
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.service import KeyService
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.build import StackSettings

if TYPE_CHECKING:
    from extapi_kit.analytics import KeyActivity
    from extapi_kit.credits import CreditLedger
    from extapi_kit.keys.leaks import LeakReportStore
    from extapi_kit.oauth.signing import SigningKeys
    from extapi_kit.usage.tracker import UsageTracker
    from extapi_kit.webhooks.manage import WebhookManager

__all__ = ["AdminApp", "admin_app", "create_admin_api"]

ADMIN_SCOPE = "admin"


def _create(
    keys: KeyService,
    webhooks: WebhookManager | None,
    audit: AuditSink | None,
    usage: UsageTracker | None,
    *,
    admin_scope: str,
    prefix: str,
    title: str,
    clock: Clock,
    activity: KeyActivity | None = None,
    signing: SigningKeys | None = None,
    credits: CreditLedger | None = None,
    leaks: LeakReportStore | None = None,
) -> tuple[ExternalAPI, AuditAccess | None]:
    if not admin_scope:
        raise ConfigurationError("admin_scope must not be empty (the admin API is never public)")
    if not is_reserved_scope(admin_scope):
        # A14: a scope that '*' or 'x:*' could grant would let "full access" keys in.
        raise ConfigurationError(
            f"admin_scope {admin_scope!r} must be a reserved scope ('admin', 'admin:...' or one "
            "with an 'admin' segment such as 'ops:admin'), which wildcards never grant"
        )
    api = ExternalAPI(
        title=title,
        prefix=prefix,
        description="Manage API keys, webhooks, usage and the audit trail. Every route needs a key "
        f"holding the {admin_scope!r} scope, sent as X-API-Key.",
        settings=StackSettings(key_store=keys, audit_sink=audit),
        max_json_body="64KiB",
    )
    scopes = (admin_scope,)
    add_key_routes(api, keys, scopes=scopes, clock=clock)
    if keys.plans is not None:  # issue 20: the key service's plans, managed here too
        from extapi_kit.admin.plans_routes import add_plan_routes

        add_plan_routes(api, keys.plans, scopes=scopes)
    access = None
    if audit is not None:
        access = AuditAccess(audit)
        add_audit_routes(api, access, keys, scopes=scopes, clock=clock)
    if usage is not None:
        add_usage_routes(api, usage, keys, scopes=scopes)
    if webhooks is not None:
        add_webhook_routes(api, webhooks, scopes=scopes)
    if activity is not None:
        from extapi_kit.admin.activity_routes import add_activity_routes

        add_activity_routes(api, activity, keys, scopes=scopes, clock=clock)
    if signing is not None:
        from extapi_kit.admin.oauth_routes import add_oauth_routes

        add_oauth_routes(api, signing, scopes=scopes)
    if credits is not None:  # issue 20 §2
        from extapi_kit.admin.credits_routes import add_credit_routes

        add_credit_routes(api, credits, keys, scopes=scopes)
    if leaks is not None:  # issue 20 §3
        from extapi_kit.admin.leaks_routes import add_leak_routes

        add_leak_routes(api, leaks, scopes=scopes)
    return api, access


def create_admin_api(
    *,
    keys: KeyService,
    webhooks: WebhookManager | None = None,
    audit: AuditSink | None = None,
    usage: UsageTracker | None = None,
    admin_scope: str = ADMIN_SCOPE,
    prefix: str = "/admin",
    title: str = "Admin API",
    clock: Clock = time.time,
    activity: KeyActivity | None = None,
    signing: SigningKeys | None = None,
    credits: CreditLedger | None = None,
    leaks: LeakReportStore | None = None,
) -> ExternalAPI:
    """Return the admin API registry (routes under ``<prefix>/v1``, all needing ``admin_scope``).

    Its default build settings use ``keys`` as the key store and ``audit`` as the audit sink, so
    ``create_admin_api(...).build()`` is a complete, authenticated, audited ASGI app; pass
    :func:`~extapi_kit.routing.build` options (``rate_limit_storage=...``) to add layers.

    Args:
        keys: the key service managed by the routes (and checking the admin key).
        webhooks: a :class:`~extapi_kit.webhooks.WebhookManager`; None leaves out ``/webhooks``.
        audit: a queryable audit sink; None leaves out ``/audit`` and ``/keys/{id}/activity``.
        usage: the :class:`~extapi_kit.usage.UsageTracker` whose counters ``/keys/{id}/usage``
            and ``/owners/{owner}/usage`` read (share the one your API stack counts with, or
            open one over the same store); None leaves those routes out.
        admin_scope: the scope every admin route requires; a reserved scope
            (:func:`~extapi_kit.context.is_reserved_scope`), held only by name, never through
            ``*`` or ``x:*``.
        prefix: the path prefix (``/admin`` gives ``/admin/v1/...``).
        title: the OpenAPI title.
        clock: returns epoch seconds (key status, the usage window).
        activity: the :class:`~extapi_kit.analytics.KeyActivity` read by
            ``/keys/{id}/analytics`` (and the console's analytics panel); None leaves it out.
        signing: the OAuth token :class:`~extapi_kit.oauth.SigningKeys`; None leaves out
            ``/oauth/signing-keys``.
        credits: the :class:`~extapi_kit.credits.CreditLedger` behind
            ``/keys/{id}/credits`` and ``/owners/{owner}/credits`` (show, set, top up,
            clear); None leaves them out.
        leaks: the :class:`~extapi_kit.keys.leaks.LeakReportStore` behind ``/leaks`` (leaked-key
            reports, ``docs/leaked-keys.md``); None leaves it out.
    """
    api, _ = _create(
        keys,
        webhooks,
        audit,
        usage,
        admin_scope=admin_scope,
        prefix=prefix,
        title=title,
        clock=clock,
        activity=activity,
        signing=signing,
        credits=credits,
        leaks=leaks,
    )
    return api


class AdminApp:
    """One ASGI app: the console at ``<prefix>/console``, everything else to the admin stack.

    Args:
        app: the built admin API stack.
        console: the console app, or None to serve the API only.
        api: the admin registry (for ``openapi()``).
    """

    def __init__(self, app: ASGIApp, *, console: ConsoleApp | None, api: ExternalAPI) -> None:
        self.app = app
        self.console = console
        self.api = api

    def __repr__(self) -> str:
        return f"AdminApp({self.api!r}, console={self.console is not None})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI call (lifespan goes to the API stack).

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive.
            send: the ASGI send.
        """
        console = self.console
        if console is not None and scope["type"] == "http" and console.handles(scope["path"]):
            await console(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _find_audit_layer(app: Any) -> Any:
    from extapi_kit.middleware.audit import AuditMiddleware

    layer = app
    for _ in range(32):
        if isinstance(layer, AuditMiddleware):
            return layer
        layer = getattr(layer, "app", None)
        if layer is None:
            return None
    return None


def admin_app(
    *,
    keys: KeyService,
    webhooks: WebhookManager | None = None,
    audit: AuditSink | None = None,
    usage: UsageTracker | None = None,
    admin_scope: str = ADMIN_SCOPE,
    prefix: str = "/admin",
    console: bool = True,
    clock: Clock = time.time,
    build_options: Mapping[str, Any] | None = None,
    activity: KeyActivity | None = None,
    signing: SigningKeys | None = None,
    credits: CreditLedger | None = None,
    leaks: LeakReportStore | None = None,
) -> AdminApp:
    """Return one ASGI app serving ``<prefix>/v1/...`` (the built admin API) and the console.

    The admin calls are audited into ``audit`` too, and the audit routes flush this app's audit
    queue before reading, so the console sees a call right after it was made.

    Args:
        keys: the key service (the admin key must live in it too).
        webhooks: a :class:`~extapi_kit.webhooks.WebhookManager`, or None.
        audit: a queryable audit sink, or None.
        usage: a :class:`~extapi_kit.usage.UsageTracker` for the usage routes (and the console's
            daily chart), or None. The admin app reads it and never closes it.
        admin_scope: the scope every admin route requires.
        prefix: the path prefix.
        console: serve the console page at ``<prefix>/console``.
        clock: returns epoch seconds.
        build_options: extra :func:`~extapi_kit.routing.build` keywords (``rate_limit_storage``,
            ``trusted_proxies``, ``options`` ...).
        activity: a :class:`~extapi_kit.analytics.KeyActivity` for ``/keys/{id}/analytics``;
            the admin app reads it and never closes it.
        signing: the OAuth token :class:`~extapi_kit.oauth.SigningKeys`; None leaves out
            ``/oauth/signing-keys``.
        credits: the :class:`~extapi_kit.credits.CreditLedger` behind
            ``/keys/{id}/credits`` and ``/owners/{owner}/credits`` (show, set, top up,
            clear); None leaves them out.
        leaks: the :class:`~extapi_kit.keys.leaks.LeakReportStore` behind ``/leaks`` (leaked-key
            reports, ``docs/leaked-keys.md``); None leaves it out.
    """
    api, access = _create(
        keys,
        webhooks,
        audit,
        usage,
        admin_scope=admin_scope,
        prefix=prefix,
        title="Admin API",
        clock=clock,
        activity=activity,
        signing=signing,
        credits=credits,
        leaks=leaks,
    )
    stack = api.build(**dict(build_options or {}))
    layer = _find_audit_layer(stack)
    if access is not None and layer is not None:
        access.flush = layer.flush
    page = None
    if console:
        hint = f"{keys.prefix}_{keys.default_env}_..."  # the keys this service issues
        page = ConsoleApp(
            api_base=f"{prefix}/v1",
            path=f"{prefix}/console",
            key_hint=hint,
            plans=keys.plans is not None,
        )
    return AdminApp(stack, console=page, api=api)
