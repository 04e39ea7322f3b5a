"""RateLimitMiddleware mounted in Starlette and FastAPI, and served over real HTTP by uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.ratelimit import RateLimitRule
from tests.ratelimit.helpers import client
from tests.support.serving import serving


async def items(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app(started: list[str] | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if started is not None:
            started.append("up")
        yield

    return Starlette(
        routes=[
            Route("/api/v1/items", items, methods=["GET", "POST"]),
            Route("/api/v1/search", items),
            Route("/health", items),
        ],
        middleware=[
            Middleware(
                RateLimitMiddleware,
                read="3/minute",
                write="1/minute",
                rules=[RateLimitRule("/api/v1/search", rate_class="search", limits="1/minute")],
                exempt_paths=["/health"],
            )
        ],
        lifespan=lifespan,
    )


@pytest.mark.anyio
async def test_starlette_app_as_in_the_docs() -> None:
    """The docs' Starlette setup: classes, rule, exemption and problem 429 behave as documented."""
    async with client(starlette_app()) as c:
        assert (await c.post("/api/v1/items")).status_code == 200
        assert (await c.post("/api/v1/items")).status_code == 429
        r = await c.get("/api/v1/items")
        assert r.status_code == 200 and r.headers["ratelimit"].startswith('"read";r=2;')
        assert (await c.get("/api/v1/search")).status_code == 200
        assert (await c.get("/api/v1/search")).json()["violated-policies"] == ["search"]
        assert "ratelimit" not in (await c.get("/health")).headers


@pytest.mark.anyio
async def test_fastapi_add_middleware() -> None:
    """FastAPI's add_middleware builds it; HEAD counts as read and 429 keeps the problem body."""
    app = FastAPI()

    @app.api_route("/x", methods=["GET", "HEAD"])
    async def x() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(RateLimitMiddleware, read="1/minute")
    async with client(app) as c:
        assert (await c.head("/x")).status_code == 200
        r = await c.get("/x")
    assert r.status_code == 429 and r.headers["retry-after"]


@pytest.mark.anyio
async def test_served_by_uvicorn_with_lifespan_on() -> None:
    """Under uvicorn (lifespan on, proxy headers off) startup runs and real HTTP gets the headers
    and the 429 (M5)."""
    started: list[str] = []
    async with (
        serving(starlette_app(started), lifespan="on") as base,
        httpx.AsyncClient(base_url=base) as c,
    ):
        codes = [(await c.get("/api/v1/items")).status_code for _ in range(4)]
        r = await c.get("/api/v1/items")
    assert started == ["up"]
    assert codes == [200, 200, 200, 429]
    assert r.headers["x-ratelimit-remaining"] == "0" and int(r.headers["retry-after"]) >= 1
