"""A plan's ``body_limit`` holds its keys' request bodies, under uvicorn on 127.0.0.1 (issue 20).

The body-size middleware runs before authentication, so it holds every request to the route's
(or its default) limit; once the auth layer knows the key, its plan's ``body_limit`` can lower
that limit for the request, by the declared ``Content-Length`` and by the bytes really received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.plans import PlanService
from tests.keys.support import cheap_hasher
from tests.middleware.test_api_key_frameworks import serve

pytestmark = pytest.mark.anyio
OUTER = 64 * 1024  # the limit checked before authentication


@dataclass
class Echo:
    """Reads the whole body and answers its length; remembers complete bodies it saw."""

    complete: list[int] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.complete.append(size)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


@dataclass
class Stack:
    base: str
    plans: PlanService
    keys: KeyService
    echo: Echo


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    plans = PlanService("memory://")
    keys = KeyService("memory://", hasher=cheap_hasher(), plans=plans)
    echo = Echo()
    # read_ahead_limit 0: chunked bodies reach the auth layer unread, as for big route limits.
    app = BodySizeLimitMiddleware(
        ApiKeyMiddleware(echo, store=keys), max_body=OUTER, read_ahead_limit=0
    )
    async with serve(app) as base:
        yield Stack(base, plans, keys, echo)
    await keys.aclose()


async def _chunks(total: int, size: int = 512) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


async def test_plan_body_limit_is_enforced_after_auth_and_follows_plan_changes() -> None:
    """R1, R2, K1: a key on free (1 KiB) gets 413 request-too-large naming 1024 for a 2,000-byte
    body, declared or chunked, and the app never sees it whole; 1,000 bytes pass; a key on pro
    (8 KiB) and a key with no plan send 2,000; raising free's limit applies at the next call; a
    plan limit above the outer one never raises it (the outer 413 names the outer limit)."""
    async with stack() as s:
        await s.plans.create("free", body_limit="1KiB")
        await s.plans.create("pro", body_limit="8KiB")
        await s.plans.create("huge", body_limit="1MiB")
        _, free = await s.keys.create("free key", plan="free")
        _, pro = await s.keys.create("pro key", plan="pro")
        _, bare = await s.keys.create("no plan")
        _, huge = await s.keys.create("huge key", plan="huge")
        async with httpx.AsyncClient(base_url=s.base, trust_env=False, timeout=10) as c:

            async def post(key: str, body: bytes | AsyncIterator[bytes]) -> httpx.Response:
                return await c.post("/upload", content=body, headers={"X-API-Key": key})

            declared = await post(free, b"x" * 2000)
            assert declared.status_code == 413
            assert declared.headers["content-type"] == "application/problem+json"
            assert declared.json()["type"].endswith("request-too-large")
            assert declared.json()["max_body"] == 1024
            chunked = await post(free, _chunks(2000))
            assert chunked.status_code == 413 and chunked.json()["max_body"] == 1024
            assert 2000 not in s.echo.complete
            small = await post(free, b"x" * 1000)
            assert (small.status_code, small.text) == (200, "1000")
            for key in (pro, bare):
                r = await post(key, _chunks(2000))
                assert (r.status_code, r.text) == (200, "2000")
            await s.plans.update("free", body_limit="4KiB")
            raised = await post(free, b"x" * 2000)
            assert (raised.status_code, raised.text) == (200, "2000")
            over = await post(huge, b"x" * (OUTER + 1))
            assert over.status_code == 413 and over.json()["max_body"] == OUTER
            assert OUTER + 1 not in s.echo.complete
