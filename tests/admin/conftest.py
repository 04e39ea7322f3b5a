"""Fixtures for the admin tests: a cheap KeyService, a memory audit sink, an admin key, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from extapi_kit._types import ASGIApp
from extapi_kit.admin import AdminApp, admin_app
from extapi_kit.audit.sink_memory import MemorySink
from extapi_kit.keys.service import KeyService
from tests.keys.support import cheap_hasher

ClientFactory = Callable[[ASGIApp], AbstractAsyncContextManager[httpx.AsyncClient]]
API = "/admin/v1"


@dataclass
class Admin:
    """What an admin test needs: the services, the app, an admin key and a client."""

    keys: KeyService
    sink: MemorySink
    app: AdminApp
    admin_id: str
    admin_key: str
    client: httpx.AsyncClient

    @property
    def h(self) -> dict[str, str]:
        """Headers carrying the admin key."""
        return {"X-API-Key": self.admin_key}


def make_keys() -> KeyService:
    """Return a memory-backed KeyService with a cheap hasher and no verify cache."""
    return KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)


@asynccontextmanager
async def asgi_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """Yield an httpx client calling ``app`` in-process from 203.0.113.7."""
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


@asynccontextmanager
async def admin_setup(**options: Any) -> AsyncIterator[Admin]:
    """Build an admin app over fresh memory services; ``options`` go to :func:`admin_app`."""
    keys = make_keys()
    sink = MemorySink()
    # "*" as well: the admin API never mints a key holding more than the caller (A14), and "*"
    # alone never passes the admin routes.
    record, secret = await keys.create("root", scopes=["admin", "*"])
    app = admin_app(keys=keys, audit=sink, **options)
    async with asgi_client(app) as client:
        yield Admin(keys, sink, app, record.id, secret, client)
    await keys.aclose()


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    """An admin app with keys and audit (no webhooks)."""
    async with admin_setup() as a:
        yield a
