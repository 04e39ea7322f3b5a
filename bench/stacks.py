"""The stacks benchmarked side by side: bare Starlette, our full stack (memory, Redis), the peers.

Every stack serves the same two endpoints: ``GET`` answering a small JSON document and ``POST``
reading a 1 KB JSON body. Ours is :meth:`ExternalAPI.build` (every middleware in DESIGN §3 order)
forwarding to that very Starlette app, with a pre-created key whose cache is warm, rate limits far
above anything a benchmark sends, a memory audit sink and idempotency on.

Builders are async (Redis clients bind to the running loop): ``await build_stack(name, env)``
returns a :class:`Stack`. Peer stacks live in ``bench/peers.py`` and raise :class:`Unavailable`
when their package is not installed (they are installed only in the bench environment).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit._types import ASGIApp
from extapi_kit.middleware.rate_limit import _with_headers

# Far above anything a run sends: the limiter decides every request but never rejects one.
HIGH_LIMIT = "1000000000/minute"
# Units a worker leases at once in the leases stack (the library default).
LEASE_BLOCK = 20
SMALL = {"id": 42, "name": "item", "ok": True}
_FILL = 1024 - len(json.dumps({"name": "bench", "payload": ""}))
BODY = json.dumps({"name": "bench", "payload": "x" * _FILL}).encode()  # exactly 1 KB
OURS = ("starlette", "extapi-memory", "extapi-redis", "extapi-redis-leases")


class Unavailable(Exception):
    """A stack cannot be built here (peer package missing, no Redis)."""


@dataclass
class BenchEnv:
    """What the builders may use.

    Args:
        redis_url: a Redis the stacks may write to, or None (Redis stacks are then skipped).
    """

    redis_url: str | None = None


@dataclass
class Stack:
    """One built stack.

    Args:
        name: the stack's name in tables.
        app: the ASGI app.
        get_path: path of the small-JSON GET endpoint.
        post_path: path of the 1 KB JSON POST endpoint.
        headers: headers an authorised request carries (the API key).
        auth: True when a request without ``headers`` must be answered 401.
        closers: coroutine functions releasing the stack's resources.
    """

    name: str
    app: ASGIApp
    get_path: str = "/items"
    post_path: str = "/items"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    auth: bool = False
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Release clients, writers and services the stack opened."""
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()


async def get_item(request: Request) -> Response:
    """The GET endpoint every stack serves: a small JSON document.

    Args:
        request: the request.
    """
    return JSONResponse(SMALL)


async def post_item(request: Request) -> Response:
    """The POST endpoint every stack serves: parse the JSON body, answer its payload length.

    Args:
        request: the request.
    """
    data = await request.json()
    return JSONResponse({"received": len(data["payload"])})


def starlette_app() -> Starlette:
    """The bare app: ``GET /items`` and ``POST /items``."""
    return Starlette(
        routes=[
            Route("/items", get_item, methods=["GET"]),
            Route("/items", post_item, methods=["POST"]),
        ]
    )


async def _bare(env: BenchEnv) -> Stack:
    return Stack("starlette", starlette_app())


def _layer_closers(app: Any) -> list[Callable[[], Awaitable[Any]]]:
    out = []
    layer = app
    while layer is not None:
        close = getattr(layer, "aclose", None)
        if close is not None:
            out.append(close)
        layer = getattr(layer, "app", None)
    return out


# The full memory stack built up one layer at a time, innermost first (DESIGN §3 order), for the
# per-layer cost table (``python -m bench layers``): each step adds one layer to the one before.
LAYER_STEPS = ("router", "api_key", "rate_limit", "body_limit", "idempotency", "audit")


# What build() is told to leave out while a step's layer is not on yet.
_LAYER_OFF: dict[str, dict[str, Any]] = {
    "api_key": {"auth": False},
    "rate_limit": {"rate_limit_storage": None},
    "body_limit": {"body_limit": None},
    "idempotency": {"idempotency_store": None},
    "audit": {"audit_sink": None},
}


def _layer_options(upto: str) -> dict[str, Any]:
    on = LAYER_STEPS[: LAYER_STEPS.index(upto) + 1]
    options: dict[str, Any] = {}
    for step, off in _LAYER_OFF.items():
        if step not in on:
            options.update(off)
    return options


async def _extapi(
    env: BenchEnv, *, redis: bool, leases: int | None = None, upto: str | None = None
) -> Stack:
    from argon2 import profiles

    from extapi_kit.audit.sink_memory import MemorySink
    from extapi_kit.keys.hashing import Argon2Hasher
    from extapi_kit.keys.service import KeyService
    from extapi_kit.routing import ExternalAPI

    if redis and env.redis_url is None:
        raise Unavailable("no Redis (redis-server not installed and REDIS_URL unset)")
    url = env.redis_url if redis and env.redis_url else "memory://"
    service = KeyService(url, hasher=Argon2Hasher(profiles.CHEAPEST))
    _, key = await service.create("bench", scopes=["items:read", "items:write"])
    await service.verify(key)  # warm the positive cache
    inner = starlette_app()
    api = ExternalAPI(docs=False)
    api.expose("GET", "/items", to=inner, path="/items", scopes=["items:read"])
    api.expose("POST", "/items", to=inner, path="/items", scopes=["items:write"])
    options: dict[str, Any] = {
        "key_store": service,
        "rate_limit_storage": url,
        "audit_sink": MemorySink(maxlen=10_000),
        "idempotency_store": url,
        "read": HIGH_LIMIT,
        "write": HIGH_LIMIT,
        "rate_limit_leases": leases,
    }
    auth = True
    if upto is not None:
        options.update(_layer_options(upto))
        auth = options.get("auth", True)
        if options.get("rate_limit_storage", url) is None:
            del options["read"], options["write"]
    app = api.build(**options)
    name = "extapi full stack (redis)" if redis else "extapi full stack (memory)"
    if leases is not None:
        name = f"extapi full stack (redis, leases of {leases})"
    if upto is not None:
        name = f"layers up to {upto}"
    closers = [service.aclose, api.aclose, *_layer_closers(app)]
    return Stack(
        name,
        app,
        get_path="/api/v1/items",
        post_path="/api/v1/items",
        headers=((b"x-api-key", key.encode()),),
        auth=auth,
        closers=closers,
    )


async def _extapi_memory(env: BenchEnv) -> Stack:
    return await _extapi(env, redis=False)


async def _extapi_redis(env: BenchEnv) -> Stack:
    return await _extapi(env, redis=True)


async def _extapi_redis_leases(env: BenchEnv) -> Stack:
    # Issue 16: decisions from locally leased blocks of the Redis budget (off by default).
    return await _extapi(env, redis=True, leases=LEASE_BLOCK)


# The structure of the full memory stack doing no work (``python -m bench floor``): between the
# server and the internal app it holds FLOOR_LAYERS ASGI layers (the route resolver, audit, body
# limit, API key, rate limit, idempotency, the registry router), FLOOR_WRAPPERS send wrappers (the
# audit exchange, the rate-limit headers, the router's 5xx mask) and adds FLOOR_HEADERS response
# headers (RateLimit-Policy, RateLimit, the three X-RateLimit-* and X-Request-ID).
# tests/test_bench_smoke.py checks all three against the real stack.
FLOOR_LAYERS = 7
FLOOR_WRAPPERS = 3
FLOOR_HEADERS = 6
FLOOR_STEPS = ("frames", "wrappers", "headers", "all")


class _PassThrough:
    """An ASGI layer that only calls the next one (one frame, as every middleware has)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Both branches call on: the test stands for the scope-type check every middleware makes.
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _WrapSend:
    """An ASGI layer wrapping ``send`` like a middleware that adds response headers."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The rate limiter's own wrapper: the stand-in costs what the real one costs.
        await self.app(scope, receive, _with_headers(send, self.headers))


def floor_headers() -> list[tuple[bytes, bytes]]:
    """Response headers shaped like the ones the full stack adds (same names and value sizes)."""
    return [
        (b"x-ratelimit-limit", b"1000000000"),
        (b"x-ratelimit-remaining", b"999999999"),
        (b"x-ratelimit-reset", b"7"),
        (b"ratelimit-policy", b'"read";q=1000000000;w=60'),
        (b"ratelimit", b'"read";r=999999999;t=7'),
        (b"x-request-id", b"32842851e1ad62e50000000000000001"),
    ][:FLOOR_HEADERS]


async def _floor(env: BenchEnv, step: str) -> Stack:
    app: ASGIApp = starlette_app()
    headers = floor_headers() if step in ("headers", "all") else []
    if step in ("wrappers", "all"):
        for i in range(FLOOR_WRAPPERS):
            app = _WrapSend(app, headers if i == 0 else [])
    elif step == "headers":
        app = _WrapSend(app, headers)
    if step in ("frames", "all"):
        for _ in range(FLOOR_LAYERS):
            app = _PassThrough(app)
    return Stack(f"floor: {step}", app)


# Bare Starlette plus one raw Redis round trip per request (PING over a plain asyncio stream, no
# client library): the least any stack deciding on Redis per request can add. The in-process
# suite runs it beside the Redis stacks (it is not a stack of the side-by-side tables).
PING_FLOOR = "starlette + one raw redis PING"


async def _redis_ping_floor(env: BenchEnv) -> Stack:
    import asyncio
    from urllib.parse import urlsplit

    if env.redis_url is None:
        raise Unavailable("no Redis (redis-server not installed and REDIS_URL unset)")
    url = urlsplit(env.redis_url)
    reader, writer = await asyncio.open_connection(url.hostname or "127.0.0.1", url.port or 6379)
    lock = asyncio.Lock()
    bare = starlette_app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            async with lock:
                writer.write(b"*1\r\n$4\r\nPING\r\n")
                if await reader.readuntil(b"\r\n") != b"+PONG\r\n":
                    raise RuntimeError("Redis did not answer PING")
        await bare(scope, receive, send)

    async def close() -> None:
        writer.close()
        await writer.wait_closed()

    return Stack(PING_FLOOR, app, closers=[close])


BUILDERS: dict[str, Callable[[BenchEnv], Awaitable[Stack]]] = {
    "starlette": _bare,
    "extapi-memory": _extapi_memory,
    "extapi-redis": _extapi_redis,
    "extapi-redis-leases": _extapi_redis_leases,
}


def redis_batches(app: Any) -> tuple[int, int] | None:
    """``(writes, commands)`` the rate limiter's auto-pipelined Redis connection sent so far.

    ``writes`` are round trips (each carries one batch); None when the stack has no such
    connection (memory stacks, peers).

    Args:
        app: the stack's ASGI app.
    """
    layer, seen = app, set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        primary = getattr(getattr(layer, "backend", None), "primary", None)
        stats = getattr(primary, "batch_stats", None)
        if stats is not None:
            return (int(stats[0]), int(stats[1]))
        layer = getattr(layer, "app", None)
    return None


def stack_names(*, peers: bool = True) -> list[str]:
    """Names of every stack, ours first, then the peers (whether installed or not).

    Args:
        peers: include the peer stacks.
    """
    names = list(BUILDERS)
    if peers:
        from bench.peers import PEERS

        names += list(PEERS)
    return names


async def build_stack(name: str, env: BenchEnv) -> Stack:
    """Build one stack by name inside the running event loop.

    Args:
        name: a name from :func:`stack_names`.
        env: what the builders may use.

    Raises:
        Unavailable: the stack's package or Redis is missing.
    """
    if name in BUILDERS:
        return await BUILDERS[name](env)
    if name.startswith("layers:") and name[7:] in LAYER_STEPS:
        return await _extapi(env, redis=False, upto=name[7:])
    if name == PING_FLOOR:
        return await _redis_ping_floor(env)
    if name.startswith("floor:") and name[6:] in FLOOR_STEPS:
        return await _floor(env, name[6:])
    from bench.peers import PEERS

    return await PEERS[name](env)


@contextlib.contextmanager
def redis_env() -> Iterator[BenchEnv]:
    """A :class:`BenchEnv` with ``REDIS_URL`` or a private redis-server started for the run."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield BenchEnv(url)
        return
    try:
        from tests.support.redis_server import RedisServer
    except ImportError:
        yield BenchEnv(None)
        return
    if not RedisServer.available():
        yield BenchEnv(None)
        return
    server = RedisServer()
    server.start()
    try:
        yield BenchEnv(server.url)
    finally:
        server.stop()
