"""AuditMiddleware: lifespan flush, a BaseHTTPMiddleware inside (M3), no secret kept (A10)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.audit import AuditRecord, LoggingSink, MemorySink
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.middleware.audit import AuditMiddleware, request_id_var


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("203.0.113.7", 1234)), base_url="http://t"
    )


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _Lifespan:
    """Drives the lifespan protocol by hand and notes what the sink held at each answer."""

    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink
        self.inbox = ["lifespan.startup", "lifespan.shutdown"]
        self.answers: list[tuple[str, int]] = []

    async def receive(self) -> Message:
        return {"type": self.inbox.pop(0)}

    async def send(self, message: Message) -> None:
        self.answers.append((message["type"], len(self.sink.records)))


async def _requests(mw: AuditMiddleware, n: int) -> None:
    async with _client(mw) as client:
        for i in range(n):
            await client.get(f"/r/{i}")


@pytest.mark.anyio
async def test_lifespan_shutdown_flushes_before_answering() -> None:
    """Queued records reach the sink before lifespan.shutdown.complete goes to the server (M5)."""
    sink = MemorySink()
    started: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                started.append(msg["type"])
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        await _ok(scope, receive, send)

    mw = AuditMiddleware(app, sink=sink, flush_interval=3600, batch_size=1000)
    server = _Lifespan(sink)
    await _requests(mw, 7)
    assert sink.records == []
    await mw({"type": "lifespan"}, server.receive, server.send)
    assert started == ["lifespan.startup", "lifespan.shutdown"]
    assert server.answers == [("lifespan.startup.complete", 0), ("lifespan.shutdown.complete", 7)]


@pytest.mark.anyio
async def test_lifespan_handled_for_an_app_without_lifespan_support() -> None:
    """An inner app that raises on lifespan still gets audit's startup/shutdown and a flush."""
    sink = MemorySink()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await _ok(scope, receive, send)

    mw = AuditMiddleware(app, sink=sink, flush_interval=3600, batch_size=1000)
    await _requests(mw, 3)
    server = _Lifespan(sink)
    await mw({"type": "lifespan"}, server.receive, server.send)
    assert server.answers == [("lifespan.startup.complete", 0), ("lifespan.shutdown.complete", 3)]


@pytest.mark.anyio
async def test_m3_base_http_middleware_inside_keeps_contextvars_and_record() -> None:
    """M3: with a BaseHTTPMiddleware in the stack the endpoint still sees the request id var."""
    sink = MemorySink()

    class Noop(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            response = await call_next(request)
            response.headers["x-noop"] = "1"
            return response

    async def endpoint(request: Request) -> Response:
        ctx = get_context(request.scope)
        ctx.resource_ids["project"] = "p1"
        return JSONResponse({"rid": request_id_var.get(), "ctx_rid": ctx.request_id})

    def auth_layer(app: ASGIApp) -> ASGIApp:
        async def layer(scope: Scope, receive: Receive, send: Send) -> None:
            get_context(scope).principal = Principal(key_id="key-9", prefix="xk_live_k9")
            await app(scope, receive, send)

        return layer

    starlette_app = Starlette(
        routes=[Route("/p", endpoint)],
        middleware=[Middleware(Noop)],
    )
    mw = AuditMiddleware(auth_layer(starlette_app), sink=sink)
    async with _client(mw) as client:
        r = await client.get("/p")
    assert r.headers["x-noop"] == "1"
    body = r.json()
    assert body["rid"] == body["ctx_rid"] == r.headers["x-request-id"]
    await mw.flush()
    rec = sink.records[0]
    assert (rec.request_id, rec.key_id, rec.resource_ids) == (
        body["rid"],
        "key-9",
        {"project": "p1"},
    )
    assert request_id_var.get() is None
    await mw.aclose()


class _FailingSink(MemorySink):
    """A sink that is always down, so every record goes through the spill file."""

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        raise StoreUnavailableError("down")


def _file_contents(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


SECRETS = [
    "xk_live_4f9c2b7e1d3a5c8e0b6d4f2a9c7e5b3d1f0a8c6e",
    "xk_test_0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3",
    "Bearer xk_live_4f9c2b7e1d3a5c8e0b6d4f2a9c7e5b3d1f0a8c6e",
    "sessionid=s3cr3t-cookie-value",
    "hunter2-password-value",
    "tok-abcdef-123456",
]


@pytest.mark.anyio
async def test_a10_no_secret_in_records_logs_or_sink_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A10: keys in Authorization/X-API-Key/Cookie/query never reach a record, log or file."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        get_context(scope).principal = Principal(key_id="key-1", prefix="xk_live_4f9c")
        if scope["path"] == "/boom":
            raise RuntimeError("failure with no secret")
        await _ok(scope, receive, send)

    memory = MemorySink()
    sqlite = SQLiteSink(str(tmp_path / "audit.db"))
    mw = AuditMiddleware(
        app,
        sink=[memory, sqlite, LoggingSink(), _FailingSink()],
        spill_path=str(tmp_path / "spill"),
        redact_query=["session"],
    )
    caplog.set_level(logging.DEBUG)
    async with _client(mw) as client:
        for path in ("/ok", "/boom"):
            try:
                await client.get(
                    path,
                    params={
                        "api_key": SECRETS[0],
                        "access_token": SECRETS[5],
                        "Password": SECRETS[4],
                        "session": SECRETS[3],
                        "page": "2",
                    },
                    headers={
                        "authorization": SECRETS[2],
                        "x-api-key": SECRETS[1],
                        "cookie": SECRETS[3],
                    },
                )
            except RuntimeError:
                pass
    await mw.aclose()
    assert len(memory.records) == 2
    assert all(r.key_id == "key-1" and "page=2" in r.query for r in memory.records)
    dumps = [json.dumps(r.to_dict()) for r in memory.records]
    # Every line our code logged (the test client's own httpx log lines are not ours).
    logs = [caplog.handler.format(r) for r in caplog.records if r.name.startswith("extapi_kit")]
    assert any('"key_id":"key-1"' in line for line in logs)  # the logging sink did write
    files = _file_contents(tmp_path)
    assert any(b"key-1" in f for f in files)  # the SQLite and spill files hold records
    for secret in SECRETS:
        for text in (*dumps, *logs):
            assert secret not in text
        for blob in files:
            assert secret.encode() not in blob


class _Session:
    """One lifespan: startup, then some requests, then shutdown."""

    def __init__(self, mw: AuditMiddleware, requests: int) -> None:
        self.mw = mw
        self.requests = requests
        self.step = 0

    async def receive(self) -> Message:
        self.step += 1
        if self.step == 1:
            return {"type": "lifespan.startup"}
        await _requests(self.mw, self.requests)
        return {"type": "lifespan.shutdown"}

    async def send(self, message: Message) -> None:
        return None


@pytest.mark.anyio
async def test_second_lifespan_gets_a_fresh_writer_and_late_records_are_counted(
    tmp_path: Path,
) -> None:
    """A new lifespan after shutdown reopens URL sinks; a record put while closed is a drop."""
    mw = AuditMiddleware(_ok, sink=f"sqlite:///{tmp_path}/a.db", flush_interval=3600)
    for _ in range(2):
        session = _Session(mw, 4)
        await mw({"type": "lifespan"}, session.receive, session.send)
        assert mw.writer.closed
    await _requests(mw, 1)
    assert mw.dropped == 1
    check = SQLiteSink(f"{tmp_path}/a.db")
    assert await check.count() == 8
    await check.aclose()
