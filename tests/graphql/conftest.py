"""The studio example served by uvicorn on 127.0.0.1 in a background thread, with three keys.

The tests talk to it as any GraphQL client would: JSON POSTs over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from extapi_kit.examples.studio._runtime import bind_loopback, run_lifespan, serve_on_socket
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.keys.service import KeyService

PARTNER_SCOPES = ["projects:read", "jobs:read", "jobs:write", "assets:write"]
OPERATOR_SCOPES = [*PARTNER_SCOPES, "models:read", "graphql:introspect", "graphql:register"]


@dataclass
class Studio:
    """A running studio: its base URL and keys (partner: project 7 only)."""

    base: str
    partner: str
    operator: str
    reader: str
    data: Path
    app: Any

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, trust_env=False)


def gql(
    c: httpx.Client,
    key: str,
    query: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **payload: Any,
) -> httpx.Response:
    """POST one GraphQL request (``query`` plus ``variables``/``operationName``/...)."""
    body: dict[str, Any] = dict(payload)
    if query is not None:
        body["query"] = query
    return c.post("/api/v1/graphql", json=body, headers={"X-API-Key": key, **(headers or {})})


async def _keys(data: Path) -> tuple[str, str, str]:
    svc = KeyService(store_urls(data)["keys"])
    try:
        _, partner = await svc.create(
            "p7", owner="p7", scopes=PARTNER_SCOPES, grants={"projects": ["7"]}
        )
        _, operator = await svc.create("ops", owner="ops", scopes=OPERATOR_SCOPES)
        _, reader = await svc.create("reader", owner="r", scopes=["projects:read"])
    finally:
        await svc.aclose()
    return partner, operator, reader


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` (and its lifespan) under uvicorn on 127.0.0.1 until the block ends."""
    sock = bind_loopback()
    port = sock.getsockname()[1]
    ready = threading.Event()
    failed: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"], holder["loop"] = stop, asyncio.get_running_loop()
        async with run_lifespan(app), serve_on_socket(app, sock):
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by the caller
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="graphql-server", daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    if failed:
        raise failed[0]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
        if failed:
            raise failed[0]


@contextlib.contextmanager
def serve_studio(data: Path, **options: Any) -> Iterator[Studio]:
    """Run ``create_app(data, **options)`` under uvicorn until the block ends."""
    app = create_app(data, **options)
    partner, operator, reader = asyncio.run(_keys(data))
    with serve(app) as base:
        yield Studio(base, partner, operator, reader, data, app)


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    """The studio with its default budgets (300 reads, 60 writes a minute per key), counted
    exactly (moving window), so the RateLimit figures tests compare never drift at a minute
    boundary as the default sliding window's estimate does."""
    with serve_studio(tmp_path / "d", rate_strategy="moving-window") as s:
        yield s
