"""Shared helpers of the key-analytics tests: a small API stack with key analytics wired in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from extapi_kit._types import ASGIApp
from extapi_kit.analytics import KeyActivity
from extapi_kit.audit.record import AuditRecord
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.routing import ExternalAPI, HandlerRequest
from extapi_kit.testing import FakeClock
from tests.keys.support import cheap_hasher


def record(
    key_id: str | None,
    ip: str | None,
    at: float,
    *,
    status: int = 200,
    agent: str | None = None,
    **kw: Any,
) -> AuditRecord:
    """An audit record of a ``GET /x`` by ``key_id`` from ``ip`` at epoch second ``at``."""
    return AuditRecord(
        timestamp_us=int(at * 1_000_000),
        request_id="r",
        method="GET",
        path="/x",
        status=status,
        key_id=key_id,
        client_ip=ip,
        user_agent=agent,
        **kw,
    )


def api() -> ExternalAPI:
    """Return a registry with a read route, a write route needing scope ``x``, and a failing one."""
    a = ExternalAPI()

    @a.get("/things", scopes=["s"])
    async def things(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    @a.post("/special", scopes=["x"], status_code=201)
    async def special(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    @a.post("/boom", scopes=["s"])
    async def boom(req: HandlerRequest) -> dict[str, Any]:
        raise RuntimeError("boom")

    return a


@dataclass
class Stack:
    """A built stack, its key service, its analytics and the events they published."""

    app: ASGIApp
    keys: KeyService
    activity: KeyActivity
    clock: FakeClock
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def settle(self) -> None:
        """Deliver queued audit records and write the pending analytics."""
        layer: Any = self.app
        while not isinstance(layer, AuditMiddleware):
            layer = layer.app
        await layer.flush()
        await self.activity.flush()

    @asynccontextmanager
    async def client(
        self, ip: str = "203.0.113.7", agent: str = "partner-sdk/1.0"
    ) -> AsyncIterator[httpx.AsyncClient]:
        """Yield a client calling the stack in-process from ``ip`` with a user agent."""
        transport = httpx.ASGITransport(
            self.app,
            client=(ip, 40000),
            raise_app_exceptions=False,
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"User-Agent": agent}
        ) as c:
            yield c


@asynccontextmanager
async def stack(store: str, *, read: str = "100/minute", **activity: Any) -> AsyncIterator[Stack]:
    """Build the API over memory keys with key analytics in ``store``."""
    clock = FakeClock()
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0, clock=clock)
    events: list[tuple[str, dict[str, Any]]] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    act = KeyActivity(store, keys=keys, on_event=on_event, **activity)
    app = api().build(key_store=keys, audit_sink="memory://", key_activity=act, read=read)
    try:
        yield Stack(app, keys, act, clock, events)
    finally:
        await act.aclose()
        await keys.aclose()
