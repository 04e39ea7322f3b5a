"""The full stack under test: an ``ExternalAPI`` built with Redis stores and a SQLite audit sink.

Shared by the in-process fault tests and the uvicorn server module. Side effects of the write
route are appended (one line each, ``O_APPEND``) to a file, so they can be counted across
processes and workers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from argon2 import profiles

from extapi_kit._types import ASGIApp, Message
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.routing import ExternalAPI, HandlerRequest

READ_SCOPE = "items:read"
WRITE_SCOPE = "orders:write"


def cheap_service(store: str, **options: Any) -> KeyService:
    """A KeyService with the cheapest argon2 parameters (tests only).

    Args:
        store: key store URL.
        **options: further KeyService options.
    """
    return KeyService(store, hasher=Argon2Hasher(profiles.CHEAPEST), **options)


def record_effect(path: Path, token: str) -> None:
    """Append one side-effect line to ``path`` (atomic for short lines with ``O_APPEND``).

    Args:
        path: the effects file.
        token: what happened (the idempotency key or order name).
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)


def count_effects(path: Path) -> dict[str, int]:
    """Return how many times each token was recorded.

    Args:
        path: the effects file.
    """
    counts: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            counts[line] = counts.get(line, 0) + 1
    return counts


def make_api(effects: Path) -> ExternalAPI:
    """A registry with a read route and an idempotent write route with a counted side effect.

    Args:
        effects: file the write route appends to.
    """
    api = ExternalAPI(title="reliability")

    @api.get("/items/{id}", scopes=[READ_SCOPE])
    async def get_item(req: HandlerRequest) -> dict[str, Any]:
        return {"id": req.path_params["id"]}

    @api.post("/orders", scopes=[WRITE_SCOPE], status_code=201, idempotent=True)
    async def create_order(req: HandlerRequest) -> dict[str, Any]:
        token = req.header("idempotency-key") or "none"
        record_effect(effects, token)
        return {"order": token}

    return api


def build_stack(
    *,
    keys: str | KeyService,
    redis_url: str | None,
    audit_db: Path,
    effects: Path,
    read: str = "1000/minute",
    write: str = "1000/minute",
    rl_deadline: float = 0.25,
    idem_timeout: float = 0.5,
    audit_stream: str | None = None,
    strategy: str = "sliding-window",
) -> ASGIApp:
    """Build the DESIGN §3 stack: Audit → BodySizeLimit → ApiKey → RateLimit → Idempotency.

    Args:
        keys: key store URL or service.
        redis_url: Redis for rate limits and idempotency (None: memory).
        audit_db: SQLite audit file.
        effects: side-effects file of the write route.
        read: read-class limit.
        write: write-class limit.
        rl_deadline: rate limiter decision deadline (seconds).
        idem_timeout: idempotency store timeout (seconds).
        audit_stream: also write audit records to this Redis stream URL (spilled when down).
        strategy: rate-limit strategy (``moving-window`` is exact in every window).
    """
    store = redis_url or "memory://"
    sqlite_sink = f"sqlite:///{audit_db}"
    audit: dict[str, Any] = {"flush_interval": 0.05}
    if audit_stream is not None:
        audit |= {"sink": [sqlite_sink, audit_stream], "spill_path": str(audit_db.parent / "spill")}
    return make_api(effects).build(
        key_store=keys,
        rate_limit_storage=store,
        idempotency_store=store,
        audit_sink=sqlite_sink,
        body_limit="64KiB",
        read=read,
        write=write,
        options={
            "rate_limit": {"deadline": rl_deadline, "strategy": strategy},
            "idempotency": {"store_timeout": idem_timeout},
            "audit": audit,
        },
    )


def audit_layer(app: ASGIApp) -> AuditMiddleware:
    """Return the AuditMiddleware inside a built stack.

    Args:
        app: what :func:`build_stack` returned.
    """
    layer: Any = app
    while not isinstance(layer, AuditMiddleware):
        layer = layer.app
    return layer


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan (startup on enter, shutdown on exit) like a server would.

    Args:
        app: the ASGI app.
    """
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    task: asyncio.Future[None] = asyncio.ensure_future(app(scope, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), 10)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        done = await asyncio.wait_for(outbox.get(), 10)
        assert done["type"] == "lifespan.shutdown.complete", done
        await asyncio.wait_for(task, 10)
        await close_layers(app)


async def close_layers(app: ASGIApp) -> None:
    """Close every layer's own stores (the built stack's lifespan only closes audit and router).

    Args:
        app: what :func:`build_stack` returned.
    """
    layer: Any = app
    while layer is not None:
        if not isinstance(layer, AuditMiddleware) and hasattr(layer, "aclose"):
            await layer.aclose()
        layer = getattr(layer, "app", None)
