"""The small examples run: Starlette/FastAPI apps with add_middleware, the third-party client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import profiles
from examples.client import ApiError, StudioClient, retry_after_seconds
from examples.fastapi_app import check as fastapi_check
from examples.starlette_app import check as starlette_check

from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from tests.support.serving import loopback_socket


@pytest.mark.anyio
async def test_starlette_example_protects_every_route() -> None:
    """The Starlette example: public health, 401 without key, 413 over the cap, 429 past budget."""
    got = dict(await starlette_check())
    assert got["health (public)"] == 200 and got["no key"] == 401 and got["list"] == 200
    assert got["too big"] == 413
    assert [got["create 0"], got["create 1"], got["create 2"]] == [201, 201, 429]


@pytest.mark.anyio
async def test_fastapi_example_protects_every_route() -> None:
    """The FastAPI example: docs public, 401 without key, 403 without scope, 429 past budget."""
    got = dict(await fastapi_check())
    assert got["docs (public)"] == 200 and got["no key"] == 401 and got["list"] == 200
    assert got["missing scope"] == 403
    assert [got["create 0"], got["create 1"], got["create 2"]] == [201, 201, 429]


def test_client_honours_retry_after_and_reuses_idempotency_key() -> None:
    """On 429 the client sleeps Retry-After and retries the write with the same Idempotency-Key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"detail": "slow"})
        return httpx.Response(201, json={"id": 5, "status": "queued"})

    slept: list[float] = []
    client = StudioClient(
        "http://t", "xk_k", transport=httpx.MockTransport(handler), sleep=slept.append
    )
    with client:
        assert client.submit_job(1, "sdxl", "fox")["id"] == 5
    assert slept == [3.0]
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 2 and len(keys) == 1 and all(r.headers["x-api-key"] == "xk_k" for r in seen)


def test_client_gives_up_after_max_retries() -> None:
    """A server that keeps answering 429 ends in ApiError after max_retries waits."""
    transport = httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"Retry-After": "1"}, json={"detail": "no"})
    )
    slept: list[float] = []
    with StudioClient("http://t", "k", transport=transport, sleep=slept.append, max_retries=2) as c:
        with pytest.raises(ApiError) as info:
            c.request("GET", "/api/v1/models")
    assert info.value.status == 429 and slept == [1.0, 1.0]


def test_client_iterates_cursor_pages() -> None:
    """The client follows next_cursor, keeping the filters on each page, until has_more is false."""
    pages = {None: ([1, 2], "c1"), "c1": ([3, 4], "c2"), "c2": ([5], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["status"] == "active"
        data, nxt = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json={"data": data, "next_cursor": nxt, "has_more": bool(nxt)})

    with StudioClient("http://t", "k", transport=httpx.MockTransport(handler)) as c:
        items: list[Any] = list(c.projects(status="active"))
        assert items == [1, 2, 3, 4, 5]


def test_retry_after_accepts_http_dates() -> None:
    """Retry-After as an HTTP-date is turned into a delay; garbage is ignored."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(later, now=now.timestamp()) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The studio app under uvicorn in a thread; yields (base URL, API key)."""
    data = tmp_path / "data"
    app = create_app(data, write_limit="100/minute")

    async def make_key() -> str:
        svc = KeyService(store_urls(data)["keys"], hasher=Argon2Hasher(profiles.CHEAPEST))
        try:
            _, key = await svc.create("client", scopes=["projects:read", "jobs:read", "jobs:write"])
        finally:
            await svc.aclose()
        return key

    key = asyncio.run(make_key())
    sock = loopback_socket()  # bound before the server starts: no port race
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def test_client_against_the_studio(studio: tuple[str, str]) -> None:
    """The client lists every project, submits one job twice (one job) and follows it to the end."""
    url, key = studio
    with StudioClient(url, key) as client:
        projects: list[dict[str, Any]] = list(client.projects(limit=8))
        assert sorted(p["id"] for p in projects) == list(range(1, 31))
        first = client.submit_job(2, "flux", "a heron", idempotency_key="heron-1")
        again = client.submit_job(2, "flux", "a heron", idempotency_key="heron-1")
        assert first == again
        events = list(client.job_events(first["id"]))
        assert events[-1]["status"] == "completed"
        with pytest.raises(ApiError) as info:
            client.request("GET", "/api/v1/tools/renderfarm/status")
        assert info.value.status == 403  # the key lacks tools:use


@pytest.mark.anyio
async def test_scoped_webhooks_example() -> None:
    """Z3 over webhooks, as the docs' runnable example shows it: the project-7 partner's endpoint
    gets project 7 only and nothing after its key is revoked; the unscoped one gets everything."""
    from examples.scoped_webhooks import main

    received = {path: sorted(ids) for path, ids in (await main()).items()}
    assert received == {"/partner": [7, 7], "/platform": [7, 7, 7, 9]}
