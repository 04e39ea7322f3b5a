"""Peer stacks: what a user assembles from existing packages, over the same two endpoints.

Installed only in the bench environment (``bench/requirements-peers.txt``), never as project
dependencies; a builder raises :class:`~bench.stacks.Unavailable` when its package is missing.
Each peer is configured the way its README shows, with limits far above what a run sends:

- ``fastapi``: bare FastAPI (the base the FastAPI peers add to).
- ``fastapi-apikeyheader``: FastAPI ``APIKeyHeader`` security dependency with a dict lookup.
- ``slowapi-memory`` / ``slowapi-redis``: slowapi's ``@limiter.limit`` on the Starlette endpoints.
- ``fastapi-limiter-redis``: fastapi-limiter's ``RateLimiter`` dependency (Redis only).
- ``asgi-ratelimit-memory`` / ``asgi-ratelimit-redis``: asgi-ratelimit's pure-ASGI middleware.
- ``peer-stack`` / ``peer-stack-redis``: FastAPI ``APIKeyHeader`` + slowapi + a pure-ASGI
  content-length limiter + a ``BaseHTTPMiddleware`` audit logger appending to a list.
"""

from __future__ import annotations

import collections
import importlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.stacks import BenchEnv, Stack, Unavailable, get_item, post_item
from extapi_kit._types import ASGIApp, Receive, Scope, Send

HIGH_SLOWAPI = "1000000000/minute"
HIGH_TIMES = 1_000_000_000
MAX_BODY = 1024 * 1024


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(
            f"{module} is not installed (pip install -r bench/requirements-peers.txt)"
        ) from exc


def _redis_url(env: BenchEnv) -> str:
    if env.redis_url is None:
        raise Unavailable("no Redis (redis-server not installed and REDIS_URL unset)")
    return env.redis_url


def _fastapi_app(dependencies: list[Any] | None = None) -> Any:
    fastapi = _need("fastapi")
    app = fastapi.FastAPI(dependencies=dependencies or [], openapi_url=None, docs_url=None)
    app.add_api_route("/items", get_item, methods=["GET"])
    app.add_api_route("/items", post_item, methods=["POST"])
    return app


def _api_key_dependency() -> tuple[Any, bytes]:
    """``Security(APIKeyHeader)`` resolving the key with a dict lookup; returns it and a key."""
    fastapi = _need("fastapi")
    security = _need("fastapi.security")
    key = "pk_" + secrets.token_urlsafe(32)
    keys = {key: {"owner": "bench", "scopes": ["items:read", "items:write"]}}
    header = security.APIKeyHeader(name="X-API-Key", auto_error=False)

    async def principal(api_key: str | None = fastapi.Security(header)) -> dict[str, Any]:
        found = keys.get(api_key) if api_key else None
        if found is None:
            raise fastapi.HTTPException(401, "invalid API key", {"WWW-Authenticate": "ApiKey"})
        return found

    return fastapi.Depends(principal), key.encode()


async def _fastapi(env: BenchEnv) -> Stack:
    return Stack("fastapi (bare)", _fastapi_app())


async def _fastapi_apikey(env: BenchEnv) -> Stack:
    dep, key = _api_key_dependency()
    return Stack(
        "fastapi + APIKeyHeader", _fastapi_app([dep]), headers=((b"x-api-key", key),), auth=True
    )


def _slowapi_limiter(storage_uri: str) -> Any:
    slowapi = _need("slowapi")
    util = _need("slowapi.util")
    return slowapi.Limiter(key_func=util.get_remote_address, storage_uri=storage_uri)


def _register_slowapi(app: Any, limiter: Any) -> None:
    slowapi = _need("slowapi")
    errors = _need("slowapi.errors")
    app.state.limiter = limiter
    app.add_exception_handler(errors.RateLimitExceeded, slowapi._rate_limit_exceeded_handler)


async def _slowapi(env: BenchEnv, storage_uri: str, name: str) -> Stack:
    limiter = _slowapi_limiter(storage_uri)
    limit = limiter.limit(HIGH_SLOWAPI)
    app = Starlette(
        routes=[
            Route("/items", limit(get_item), methods=["GET"]),
            Route("/items", limit(post_item), methods=["POST"]),
        ]
    )
    _register_slowapi(app, limiter)
    return Stack(name, app)


async def _slowapi_memory(env: BenchEnv) -> Stack:
    return await _slowapi(env, "memory://", "slowapi (memory)")


async def _slowapi_redis(env: BenchEnv) -> Stack:
    return await _slowapi(env, _redis_url(env), "slowapi (redis)")


async def _fastapi_limiter(env: BenchEnv) -> Stack:
    url = _redis_url(env)
    fastapi = _need("fastapi")
    limiter_mod = _need("fastapi_limiter")
    depends = _need("fastapi_limiter.depends")
    aioredis = _need("redis.asyncio")
    client = aioredis.from_url(url, encoding="utf-8", decode_responses=True)
    await limiter_mod.FastAPILimiter.init(client)
    dep = fastapi.Depends(depends.RateLimiter(times=HIGH_TIMES, minutes=1))
    return Stack("fastapi-limiter (redis)", _fastapi_app([dep]), closers=[client.aclose])


async def _peer_ip(scope: Scope) -> tuple[str, str]:
    # ratelimit.auths.ip.client_ip refuses non-global addresses (loopback, test nets).
    return str(scope["client"][0]), "default"


async def _asgi_ratelimit(env: BenchEnv, *, redis: bool) -> Stack:
    ratelimit = _need("ratelimit")
    closers: list[Callable[[], Awaitable[Any]]] = []
    if redis:
        backend_mod = _need("ratelimit.backends.redis")
        client = _need("redis.asyncio").StrictRedis.from_url(_redis_url(env))
        backend = backend_mod.RedisBackend(client)
        closers.append(client.aclose)
    else:
        backend = _need("ratelimit.backends.simple").MemoryBackend()
    app = ratelimit.RateLimitMiddleware(
        Starlette(
            routes=[
                Route("/items", get_item, methods=["GET"]),
                Route("/items", post_item, methods=["POST"]),
            ]
        ),
        _peer_ip,
        backend,
        {r"^/items": [ratelimit.Rule(minute=HIGH_TIMES)]},
    )
    name = "asgi-ratelimit (redis)" if redis else "asgi-ratelimit (memory)"
    return Stack(name, app, closers=closers)


async def _asgi_ratelimit_memory(env: BenchEnv) -> Stack:
    return await _asgi_ratelimit(env, redis=False)


async def _asgi_ratelimit_redis(env: BenchEnv) -> Stack:
    return await _asgi_ratelimit(env, redis=True)


class ContentLengthLimit:
    """The body limiter a user writes: refuse a declared ``Content-Length`` above the cap.

    Args:
        app: the wrapped app.
        max_body: the cap in bytes.
    """

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and int(value) > self.max_body:
                    await send({"type": "http.response.start", "status": 413, "headers": []})
                    await send({"type": "http.response.body", "body": b"too large"})
                    return
        await self.app(scope, receive, send)


def _audit_middleware(records: collections.deque[dict[str, Any]]) -> Any:
    class AuditLog(BaseHTTPMiddleware):
        """An audit logger as the FastAPI docs suggest: one dict per request in a list."""

        async def dispatch(self, request: Request, call_next: Any) -> Response:
            start = time.perf_counter()
            response: Response = await call_next(request)
            records.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "client": request.client.host if request.client else None,
                    "key": request.headers.get("x-api-key", "")[:8],
                    "ms": (time.perf_counter() - start) * 1000,
                }
            )
            return response

    return AuditLog


async def _peer_stack(env: BenchEnv, *, redis: bool) -> Stack:
    dep, key = _api_key_dependency()
    limiter = _slowapi_limiter(_redis_url(env) if redis else "memory://")
    limit = limiter.limit(HIGH_SLOWAPI)
    fastapi = _need("fastapi")
    app = fastapi.FastAPI(dependencies=[dep], openapi_url=None, docs_url=None)
    app.add_api_route("/items", limit(get_item), methods=["GET"])
    app.add_api_route("/items", limit(post_item), methods=["POST"])
    _register_slowapi(app, limiter)
    records: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)
    app.add_middleware(ContentLengthLimit, max_body=MAX_BODY)
    app.add_middleware(_audit_middleware(records))  # added last: outermost
    name = "peer stack (redis)" if redis else "peer stack (memory)"
    return Stack(name, app, headers=((b"x-api-key", key),), auth=True)


async def _peer_stack_memory(env: BenchEnv) -> Stack:
    return await _peer_stack(env, redis=False)


async def _peer_stack_redis(env: BenchEnv) -> Stack:
    return await _peer_stack(env, redis=True)


PEERS: dict[str, Callable[[BenchEnv], Awaitable[Stack]]] = {
    "fastapi": _fastapi,
    "fastapi-apikeyheader": _fastapi_apikey,
    "slowapi-memory": _slowapi_memory,
    "slowapi-redis": _slowapi_redis,
    "fastapi-limiter-redis": _fastapi_limiter,
    "asgi-ratelimit-memory": _asgi_ratelimit_memory,
    "asgi-ratelimit-redis": _asgi_ratelimit_redis,
    "peer-stack": _peer_stack_memory,
    "peer-stack-redis": _peer_stack_redis,
}
