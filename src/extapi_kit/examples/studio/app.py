"""The studio example server: internal platform + public API + webhooks + tool, in one ASGI app.

``create_app(data_dir)`` composes, outermost first::

    CORS → Starlette router ─┬─ /api/...   the ExternalAPI stack (audit, body limit, keys,
                             │              rate limits, usage and quotas, idempotency, registry)
                             ├─ /admin/... the admin API and console (when extapi_kit.admin
                             │              provides one)
                             ├─ /health    liveness and configuration summary
                             └─ /          a small index page

The internal app (its own SQLite file) is never mounted: it is reached only through the routes
the external API declares. Its lifespan (the job worker), the stack's lifespan, the webhook
dispatcher and the render-farm tool (a separate uvicorn server on a free 127.0.0.1 port, in the
same event loop) all run in this app's lifespan. With ``redis_url`` every shared store (keys,
audit, idempotency, rate limits, usage counters, webhooks) lives in Redis, so several workers can
serve it; with ``postgres_url`` the durable ones (keys, audit, idempotency, usage, webhooks) live
in PostgreSQL and rate limits in Redis or, without it, in each worker's memory (every worker then
enforces its own copy of each limit). One :class:`~extapi_kit.usage.UsageTracker` counts the
API's requests (and charges quotas by each route's ``cost``), answers the admin API's usage
routes, and publishes the quota notifications (``api_key.quota_warning``/
``api_key.quota_exhausted``) as webhooks.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route

from extapi_kit.analytics import KeyActivity
from extapi_kit.audit import audit_store_from_url
from extapi_kit.credits import CreditLedger
from extapi_kit.examples.studio._runtime import bind_loopback, run_lifespan, serve_on_socket
from extapi_kit.examples.studio.external import STUDIO_EVENTS, build_external_api
from extapi_kit.examples.studio.internal import create_internal_app
from extapi_kit.examples.studio.renderfarm import create_renderfarm_app
from extapi_kit.exceptions import ConflictError
from extapi_kit.keys.leaks import LeakReport, LeakResponder, leak_event_data
from extapi_kit.keys.leaks_github import GITHUB_KEYS_URL, PublicKeys, SecretScanningEndpoint
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth import SigningKeys, TokenIssuer
from extapi_kit.oauth.verify import TokenVerifier
from extapi_kit.plans import PlanService
from extapi_kit.usage import UsageTracker
from extapi_kit.webhooks import (
    KeyGrants,
    WebhookDispatcher,
    WebhookManager,
    webhook_store_from_url,
)

__all__ = ["DEFAULT_CORS_ORIGIN", "app_from_env", "create_app", "store_urls"]

logger = logging.getLogger("extapi_kit.examples.studio")

DEFAULT_CORS_ORIGIN = "http://localhost:3000"
#: The ``iss`` of the demo's access tokens (and the base of its OAuth metadata URLs).
DEFAULT_ISSUER = "http://127.0.0.1:8000"
_CORS_HEADERS = ["authorization", "content-type", "idempotency-key", "x-api-key", "x-request-id"]
_EXPOSED = ["ratelimit", "ratelimit-policy", "retry-after", "x-request-id", "location"]


def store_urls(
    data_dir: str | Path, redis_url: str | None = None, postgres_url: str | None = None
) -> dict[str, str]:
    """Return the store URL of every component (SQLite files in ``data_dir``, Redis, PostgreSQL).

    Args:
        data_dir: the data directory.
        redis_url: a Redis URL moving every shared store to Redis.
        postgres_url: a PostgreSQL URL moving every durable store (keys, audit, idempotency,
            usage, webhooks) to PostgreSQL; rate limits then stay in Redis if given, else in
            each process's memory.
    """
    d = Path(data_dir).resolve()
    if postgres_url:
        durable = ("keys", "audit", "idempotency", "usage", "webhooks")
        return {**{k: postgres_url for k in durable}, "rate_limit": redis_url or "memory://"}
    if redis_url:
        kinds = ("keys", "audit", "idempotency", "rate_limit", "usage", "webhooks")
        return {k: redis_url for k in kinds}
    return {
        "keys": f"sqlite:///{d / 'keys.db'}",
        "audit": f"sqlite:///{d / 'audit.db'}",
        "idempotency": f"sqlite:///{d / 'idempotency.db'}",
        "rate_limit": "memory://",
        "usage": f"sqlite:///{d / 'usage.db'}",
        "webhooks": f"sqlite:///{d / 'webhooks.db'}",
    }


def _cursor_secret(data_dir: Path) -> str:
    # Shared by every worker (they all read the same file), so cursors work across them.
    path = data_dir / "cursor.secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _signing_secret(data_dir: Path) -> str:
    # Seals the token signing keys at rest (docs/oauth.md); shared by every worker like the
    # cursor secret. A worker losing the race to create it reads the winner's.
    path = data_dir / "signing.secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    for _ in range(50):
        secret = path.read_text().strip()
        if secret:
            return secret
        time.sleep(0.01)
    return path.read_text().strip()


# The example platform's tiers: partners on free by default, pro for paying ones.
STUDIO_PLANS: dict[str, dict[str, Any]] = {
    "free": {"rate_limits": {"read": "60/minute", "write": "10/minute"}, "quota": {"daily": 1000}},
    "pro": {"rate_limits": {"read": "1000/minute", "write": "100/minute"}},
}


async def _ensure_plans(plans: PlanService) -> None:
    existing = {p.name for p in await plans.list()}
    for name, settings in STUDIO_PLANS.items():
        if name not in existing:
            with contextlib.suppress(ConflictError):  # another worker made it first
                await plans.create(name, **settings)


def _admin_app(**components: Any) -> Any:
    """Return the admin API + console app if ``extapi_kit.admin`` provides one, else None."""
    try:
        from extapi_kit.admin import admin_app
    except ImportError:
        return None
    accepted = inspect.signature(admin_app).parameters
    try:
        return admin_app(**{k: v for k, v in components.items() if k in accepted})
    except Exception:  # the demo still runs without its console
        logger.exception("the admin console could not be started; serving without it")
        return None


def create_app(
    data_dir: str | Path,
    *,
    redis_url: str | None = None,
    postgres_url: str | None = None,
    cors_origins: tuple[str, ...] = (DEFAULT_CORS_ORIGIN,),
    read_limit: str = "300/minute",
    write_limit: str = "60/minute",
    rate_strategy: str = "sliding-window",
    key_cache_ttl: float = 2.0,
    freeze_gc: bool = False,
    partner_loopback_webhooks: bool = False,
    issuer: str = DEFAULT_ISSUER,
    leak_keys_url: str = GITHUB_KEYS_URL,
) -> Starlette:
    """Build the whole studio server.

    Args:
        data_dir: directory for the SQLite files and the cursor secret (created if missing).
        redis_url: move keys, audit, idempotency, rate limits and webhooks to this Redis.
        postgres_url: move keys, audit, idempotency, usage and webhooks to this PostgreSQL
            database (rate limits: ``redis_url`` if given, else in memory).
        cors_origins: browser origins allowed to call the API.
        read_limit: default budget of the ``read`` rate class per key.
        write_limit: default budget of the ``write`` rate class per key.
        rate_strategy: ``sliding-window`` (cheap, approximate near window edges),
            ``moving-window`` (exact) or ``fixed-window``.
        key_cache_ttl: seconds a verified key is trusted before the store is read again (a
            revocation made by another process, such as the CLI, applies within this time).
        partner_loopback_webhooks: let partners register 127.0.0.1 webhook URLs through the
            public API (tests only; operators' endpoints may always be local in the demo).
        freeze_gc: call ``gc.freeze()`` once started (a serving process; not in tests, where
            apps start many times in one interpreter).
        issuer: the ``iss`` of the access tokens partners get at ``POST /oauth/token`` (client
            credentials with their API key, docs/oauth.md); the base URL the demo is served at.
        leak_keys_url: the secret scanning provider's public keys document (GitHub's by
            default); reports are received at ``/api/v1/secret-scanning/github``.
    """
    data = Path(data_dir).resolve()
    # 0700: its files hold key hashes, webhook signing secrets and the cursor secret (G4).
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    urls = store_urls(data, redis_url, postgres_url)
    # Domain events name their project (job and asset payloads carry project_id), so a
    # project-scoped key's webhook endpoint receives its projects' events only (KeyGrants below).
    dispatcher = WebhookDispatcher(
        webhook_store_from_url(urls["webhooks"]),
        allow_loopback=True,
        resource_fields={"project_id": "projects"},
        # Every publish is checked against the catalogue the API documents (webhooks section,
        # /api/v1/webhooks/event-types), and carries its type's version in the envelope.
        catalogue=STUDIO_EVENTS,
    )

    async def publish(
        kind: str,
        payload: dict[str, Any],
        event_id: str | None = None,
        resources: dict[str, list[Any]] | None = None,
    ) -> None:
        try:
            await dispatcher.publish(kind, payload, event_id=event_id, resources=resources)
        except Exception:  # an event must never break the platform's own work
            logger.exception("could not publish %s", kind)

    async def on_domain_event(kind: str, payload: dict[str, Any]) -> None:
        # Job transitions are final, so a stable id makes a repeated emit (two workers) a no-op.
        event_id = (
            f"evt_{kind.replace('.', '_')}_{payload['id']}" if kind.startswith("job.") else None
        )
        # A project's own events carry its id as "id"; the others name it by project_id.
        resources = {"projects": [payload["id"]]} if kind.startswith("project.") else None
        await publish(kind, payload, event_id, resources)

    async def on_key_event(kind: str, record: KeyRecord) -> None:
        await publish(kind, record.public_dict(time.time()))

    async def on_usage_event(kind: str, data: dict[str, Any]) -> None:
        # The tracker settles "once per quota and period" across workers before calling this.
        await publish(kind, data)

    internal = create_internal_app(str(data / "studio.db"), on_event=on_domain_event)
    # Plans (issue 20 §1, docs/plans.md): free and pro tiers live beside the keys.
    plans = PlanService(urls["keys"], cache_ttl=key_cache_ttl)
    keys = KeyService(urls["keys"], cache_ttl=key_cache_ttl, on_event=on_key_event, plans=plans)
    # Partners may trade their key for a 15-minute token (issue 19): signing keys live beside the
    # API keys, sealed with a secret kept in the data directory.
    signing = SigningKeys(urls["keys"], secret=_signing_secret(data))
    tokens = TokenIssuer(keys, signing, issuer=issuer)
    dispatcher.key_grants = KeyGrants(keys, ttl=key_cache_ttl)
    # The operator's manager may register 127.0.0.1 receivers (local demos); partners' self-service
    # registrations may not, and the dispatcher never sends theirs to loopback (W1).
    manager = WebhookManager(dispatcher.store, allow_loopback=True)
    partner_hooks = WebhookManager(dispatcher.store, allow_loopback=partner_loopback_webhooks)
    audit = audit_store_from_url(urls["audit"])
    usage = UsageTracker(urls["usage"], on_event=on_usage_event)
    # Credits (issue 20 §2, docs/credits.md): a partner given a balance (admin API or
    # `extapi-kit credits add N --key ID`) spends each call's cost from it; the balances share
    # the usage store, so on Redis the rate limiter spends them in its one script per request.
    credits = CreditLedger(urls["usage"], on_event=on_usage_event)

    # Leaked-key reports (issue 20 §3, docs/leaked-keys.md): a key GitHub finds in public is
    # revoked, the report kept beside the keys, audited, and its owner gets api_key.leaked.
    async def on_leak(report: LeakReport, record: KeyRecord) -> None:
        await publish("api_key.leaked", leak_event_data(report, record), "evt_" + report.id)

    leaks = LeakResponder(keys, urls["keys"], audit=audit, on_leak=on_leak)
    leak_endpoint = SecretScanningEndpoint(leaks, PublicKeys(leak_keys_url))
    # Key analytics (issue 20 §4) ride on the audit records; their table shares the key store.
    # Keys whose metadata says notify_new_ip get an api_key.new_ip webhook per new address.
    activity = KeyActivity(urls["keys"], keys=keys, on_event=on_usage_event)
    farm_sock = bind_loopback()
    farm_token = secrets.token_urlsafe(24)
    farm_port = farm_sock.getsockname()[1]
    api = build_external_api(
        internal,
        internal.state.db,
        cursor_secret=_cursor_secret(data),
        farm_url=f"http://127.0.0.1:{farm_port}",
        farm_token=farm_token,
        webhooks=partner_hooks,
    )
    # Public (the provider signs each report; no API key), its own body cap, not in the OpenAPI
    # document; the stack's per-IP rate limit applies and the endpoint has its own flood cap.
    api.expose(
        "POST", "/secret-scanning/github", to=leak_endpoint, public=True, body_limit="1MiB",
        idempotent=False, include_in_schema=False,
    )  # fmt: skip
    api.oauth(tokens)
    stack = api.build(
        key_store=keys,
        token_verifier=TokenVerifier(issuer=issuer, keys=signing.jwks),
        rate_limit_storage=urls["rate_limit"],
        audit_sink=audit,
        idempotency_store=urls["idempotency"],
        usage=usage,
        key_activity=activity,
        credits=credits,
        read=read_limit,
        write=write_limit,
        body_limit="1MiB",
        options={"rate_limit": {"strategy": rate_strategy}},
    )
    admin = _admin_app(
        keys=keys,
        webhooks=manager,
        audit=audit,
        usage=usage,
        leaks=leaks.store,
        activity=activity,
        signing=signing,
        credits=credits,
        prefix="/admin",
        build_options={"rate_limit_storage": urls["rate_limit"]},
    )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "backend": "postgresql" if postgres_url else "redis" if redis_url else "sqlite",
                "admin": admin is not None,
                "pid": os.getpid(),
            }
        )

    async def index(request: Request) -> HTMLResponse:
        links = ['<li><a href="/api/v1/docs">API reference</a> (/api/v1/openapi.json)</li>']
        if any(r.path == "/graphql/explorer" for r in api.routes):
            links.append('<li><a href="/api/v1/graphql/explorer">GraphQL explorer</a></li>')
        if admin is not None:
            links.append('<li><a href="/admin/console">Admin console</a></li>')
        return HTMLResponse(
            "<!doctype html><title>Studio demo</title><h1>Studio demo (extapi_kit)</h1>"
            f"<ul>{''.join(links)}<li><a href='/health'>health</a></li></ul>"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as exits:
            await exits.enter_async_context(
                serve_on_socket(create_renderfarm_app(farm_token), farm_sock)
            )
            exits.push_async_callback(plans.aclose)
            exits.push_async_callback(keys.aclose)
            exits.push_async_callback(leaks.aclose)
            await _ensure_plans(plans)
            exits.push_async_callback(signing.aclose)
            exits.push_async_callback(audit.aclose)
            exits.push_async_callback(dispatcher.store.aclose)
            # Closed after the stack's shutdown flushed it, before the webhook store closes (its
            # last quota notifications are published through the dispatcher).
            exits.push_async_callback(usage.aclose)
            exits.push_async_callback(credits.aclose)
            exits.push_async_callback(activity.aclose)
            await exits.enter_async_context(run_lifespan(stack))
            await exits.enter_async_context(internal.router.lifespan_context(internal))
            await exits.enter_async_context(dispatcher.lifespan_context())
            if admin is not None:
                await exits.enter_async_context(run_lifespan(admin))
            if freeze_gc:
                # Tail latency: the start-up heap is never scanned by full collections again
                # (docs/deployment.md, "freeze the startup heap").
                gc.collect()
                gc.freeze()
            yield

    routes: list[Any] = [Route("/health", health), Route("/", index), Mount("/api", app=stack)]
    # The token endpoint and its well-known documents are served by the same stack (audited,
    # rate limited per client IP), at the root of the host as RFC 8414 expects.
    routes += [Mount("/oauth", app=stack), Mount("/.well-known", app=stack)]
    if admin is not None:
        routes.append(Mount("/admin", app=admin))
    cors = Middleware(
        CORSMiddleware,
        allow_origins=list(cors_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=_CORS_HEADERS,
        expose_headers=_EXPOSED,
        max_age=600,
    )
    app = Starlette(routes=routes, middleware=[cors], lifespan=lifespan)
    app.state.api = api
    app.state.keys = keys
    app.state.signing = signing
    app.state.usage = usage
    app.state.dispatcher = dispatcher
    app.state.store_urls = urls
    return app


def app_from_env() -> Starlette:
    """The uvicorn factory used for ``--workers`` (configuration comes from the environment).

    Reads ``EXTAPI_DEMO_DATA_DIR``, ``EXTAPI_DEMO_REDIS_URL`` (else ``REDIS_URL``),
    ``EXTAPI_DEMO_POSTGRES_URL``,
    ``EXTAPI_DEMO_READ_LIMIT``, ``EXTAPI_DEMO_WRITE_LIMIT``, ``EXTAPI_DEMO_RATE_STRATEGY``,
    ``EXTAPI_DEMO_CORS_ORIGINS`` (comma separated), ``EXTAPI_DEMO_KEY_CACHE_TTL`` and
    ``EXTAPI_DEMO_ISSUER``.
    """
    env = os.environ
    origins = env.get("EXTAPI_DEMO_CORS_ORIGINS", DEFAULT_CORS_ORIGIN)
    return create_app(
        env.get("EXTAPI_DEMO_DATA_DIR", "./extapi-demo-data"),
        redis_url=env.get("EXTAPI_DEMO_REDIS_URL") or env.get("REDIS_URL") or None,
        postgres_url=env.get("EXTAPI_DEMO_POSTGRES_URL") or None,
        cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
        read_limit=env.get("EXTAPI_DEMO_READ_LIMIT", "300/minute"),
        write_limit=env.get("EXTAPI_DEMO_WRITE_LIMIT", "60/minute"),
        rate_strategy=env.get("EXTAPI_DEMO_RATE_STRATEGY", "sliding-window"),
        key_cache_ttl=float(env.get("EXTAPI_DEMO_KEY_CACHE_TTL", "2")),
        freeze_gc=True,
        issuer=env.get("EXTAPI_DEMO_ISSUER", DEFAULT_ISSUER),
    )
