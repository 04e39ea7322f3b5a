"""AuditMiddleware: fields, request ids, inner rejections, errors, disconnects, websocket."""

from __future__ import annotations

import logging

import httpx
import pytest

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.audit import AuditRecord, MemorySink
from extapi_kit.context import Principal, RateLimitInfo, RouteSettings, get_context
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.problems import send_problem
from extapi_kit.testing import FakeClock


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("203.0.113.7", 1234)),  # type: ignore[arg-type]
        base_url="http://t",
    )


async def _ok(send: Send, body: bytes = b"hello") -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def stack(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in for the inner layers: decides like auth/rate limit/registry would."""
    ctx = get_context(scope)
    path = scope["path"]
    if path == "/unauth":
        await send_problem(send, "unauthorized", scope=scope)
        return
    ctx.principal = Principal(key_id="key-1", prefix="xk_test_abc", owner="acme")
    ctx.route = RouteSettings(template="/items/{id}", scopes=("items:read",))
    ctx.rate_limit = RateLimitInfo("per-key", 100, 99, 60.0)
    ctx.idempotency = "stored"
    ctx.resource_ids["item"] = path.rsplit("/", 1)[-1]
    ctx.extra["tier"] = "gold"
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body", False):
            break
    await _ok(send, b"x" * (len(body) + 3))


async def _only(sink: MemorySink, mw: AuditMiddleware) -> AuditRecord:
    await mw.aclose()
    assert len(sink.records) == 1
    return sink.records[0]


@pytest.mark.anyio
async def test_record_carries_every_decision_of_the_inner_stack() -> None:
    """One record per call with principal, route template, rate limit, idempotency, bytes, IP."""
    sink = MemorySink()
    clock = FakeClock(1_800_000_000.25)
    mw = AuditMiddleware(stack, sink=sink, clock=clock)
    async with _client(mw) as client:
        r = await client.post(
            "/items/42?page=2&api_key=zzz", content=b"abcd", headers={"user-agent": "ua/1"}
        )
    assert r.status_code == 200
    rec = await _only(sink, mw)
    assert rec.timestamp_us == 1_800_000_000_250_000
    assert (rec.method, rec.path, rec.route, rec.status) == (
        "POST",
        "/items/42",
        "/items/{id}",
        200,
    )
    assert rec.query == "page=2&api_key=[REDACTED]"
    assert (rec.key_id, rec.key_prefix, rec.owner) == ("key-1", "xk_test_abc", "acme")
    assert rec.scopes == ("items:read",)
    assert rec.client_ip == "203.0.113.7"
    assert rec.user_agent == "ua/1"
    assert (rec.bytes_in, rec.bytes_out) == (4, 7)
    assert rec.rate_limit is not None and rec.rate_limit["remaining"] == 99
    assert rec.idempotency == "stored"
    assert rec.resource_ids == {"item": "42"}
    assert rec.extra == {"tier": "gold"}
    assert rec.protocol == "http" and rec.outcome == "ok"
    assert not rec.error and not rec.client_disconnected
    assert rec.request_id == r.headers["x-request-id"]
    assert AuditRecord.from_dict(rec.to_dict()) == rec


@pytest.mark.anyio
async def test_rejection_by_an_inner_layer_is_recorded() -> None:
    """A problem sent by an inner layer is recorded with its status and slug (no key)."""
    sink = MemorySink()
    mw = AuditMiddleware(stack, sink=sink)
    async with _client(mw) as client:
        r = await client.get("/unauth")
    assert r.status_code == 401
    rec = await _only(sink, mw)
    assert (rec.status, rec.rejection, rec.key_id, rec.outcome) == (
        401,
        "unauthorized",
        None,
        "rejected",
    )
    assert rec.route == "/unauth"


@pytest.mark.anyio
async def test_request_id_accepted_when_well_formed_else_generated() -> None:
    """A valid X-Request-ID is echoed and recorded; a malformed one is replaced by a new id."""
    sink = MemorySink()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_context(scope).request_id)
        await _ok(send)

    mw = AuditMiddleware(app, sink=sink)
    async with _client(mw) as client:
        good = await client.get("/", headers={"x-request-id": "abc-123.X_y"})
        bad = await client.get("/", headers={"x-request-id": "bad id\twith spaces" + "x" * 200})
        none1 = await client.get("/")
        none2 = await client.get("/")
    assert good.headers["x-request-id"] == "abc-123.X_y" == seen[0]
    assert bad.headers["x-request-id"] not in ("", "bad id\twith spaces")
    ids = [r.headers["x-request-id"] for r in (bad, none1, none2)]
    assert len(set(ids)) == 3 and ids == seen[1:]
    await mw.flush()
    assert [r.request_id for r in sink.records] == seen


@pytest.mark.anyio
async def test_existing_response_request_id_header_is_not_duplicated() -> None:
    """When the app already sets X-Request-ID the middleware adds no second one."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"app")]}
        )
        await send({"type": "http.response.body", "body": b""})

    mw = AuditMiddleware(app, sink="memory://")
    async with _client(mw) as client:
        r = await client.get("/")
    assert r.headers.get_list("x-request-id") == ["app"]
    await mw.aclose()


class _Server:
    """A hand-driven server side: scripted receive messages, recorded sends."""

    def __init__(self, incoming: list[Message], *, send_error: BaseException | None = None) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []
        self.send_error = send_error

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)


def _scope(path: str = "/", kind: str = "http") -> Scope:
    return {
        "type": kind,
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [],
        "client": ("198.51.100.1", 5555),
    }


@pytest.mark.anyio
async def test_m1_client_disconnect_mid_body_is_recorded_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """M1: 30 KB of a 100 KB body then disconnect -> client_disconnected, no error, no raise."""
    from starlette.requests import Request

    called_with: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await Request(scope, receive).body()  # raises ClientDisconnect
        called_with.append(body)

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server(
        [
            {"type": "http.request", "body": b"a" * 30_000, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    with caplog.at_level(logging.WARNING):
        await mw(_scope(), server.receive, server.send)
    rec = await _only(sink, mw)
    assert called_with == []
    assert rec.client_disconnected and not rec.error
    assert rec.bytes_in == 30_000 and rec.status == 499 and rec.outcome == "disconnected"
    assert server.sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_m2_error_after_response_start_sets_error_flag_without_second_start() -> None:
    """M2: the app raises after http.response.start: one start only, started status + error."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("boom")

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([{"type": "http.request", "body": b"", "more_body": False}])
    with pytest.raises(RuntimeError):
        await mw(_scope(), server.receive, server.send)
    rec = await _only(sink, mw)
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]
    assert (rec.status, rec.error, rec.bytes_out, rec.outcome) == (200, True, 4, "error")


@pytest.mark.anyio
async def test_error_before_response_start_records_500_and_reraises() -> None:
    """An app failing before responding is recorded as 500 + error and the error propagates."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("early")

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([{"type": "http.request", "body": b""}])
    with pytest.raises(ValueError):
        await mw(_scope(), server.receive, server.send)
    rec = await _only(sink, mw)
    assert (rec.status, rec.error, rec.client_disconnected) == (500, True, False)
    assert server.sent == []


@pytest.mark.anyio
async def test_m6_send_after_client_left_is_handled_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """M6: send() raising OSError marks the record disconnected; nothing raised or logged."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([], send_error=ConnectionResetError("peer gone"))
    with caplog.at_level(logging.WARNING):
        await mw(_scope(), server.receive, server.send)
    rec = await _only(sink, mw)
    assert rec.client_disconnected and not rec.error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_websocket_session_is_one_record() -> None:
    """An accepted websocket session is one record: 101, message bytes, client disconnect."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg["text"].upper()})

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server(
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hello"},
            {"type": "websocket.receive", "text": "abc"},
            {"type": "websocket.disconnect", "code": 1001},
        ]
    )
    await mw(_scope("/ws", "websocket"), server.receive, server.send)
    rec = await _only(sink, mw)
    assert (rec.protocol, rec.status, rec.bytes_in, rec.bytes_out) == ("websocket", 101, 8, 8)
    assert rec.client_disconnected and rec.extra["ws_close_code"] == 1001
    accept = server.sent[0]
    assert dict(accept["headers"])[b"x-request-id"] == rec.request_id.encode()


@pytest.mark.anyio
async def test_websocket_denied_before_accept_is_403() -> None:
    """A websocket closed by an inner layer before accept is recorded as a 403 denial."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        get_context(scope).rejection = "unauthorized"
        await send({"type": "websocket.close", "code": 1008})

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([{"type": "websocket.connect"}])
    await mw(_scope("/ws", "websocket"), server.receive, server.send)
    rec = await _only(sink, mw)
    assert (rec.status, rec.rejection, rec.client_disconnected) == (403, "unauthorized", False)
    assert rec.extra["ws_close_code"] == 1008


@pytest.mark.anyio
async def test_hooks_get_every_record_and_their_errors_never_reach_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sync and async hooks receive each record; a failing hook is logged, the call succeeds."""
    got_sync: list[AuditRecord] = []
    got_async: list[AuditRecord] = []

    async def async_hook(rec: AuditRecord) -> None:
        got_async.append(rec)

    def failing(rec: AuditRecord) -> None:
        raise RuntimeError("hook broke")

    mw = AuditMiddleware(stack, sink=[got_sync.append, async_hook], hook=failing)
    async with _client(mw) as client:
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
    await mw.aclose()
    assert [r.path for r in got_sync] == ["/items/1", "/items/2"]
    assert got_async == got_sync
    assert any("hook" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_full_queue_drops_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past queue_size records are dropped, counted in .dropped and logged (throttled)."""
    sink = MemorySink()
    mw = AuditMiddleware(stack, sink=sink, queue_size=5, batch_size=100, flush_interval=3600)
    async with _client(mw) as client:
        for i in range(12):
            await client.get(f"/items/{i}")
    await mw.flush()
    assert mw.dropped == 7
    assert len(sink.records) == 5
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1 and drops[0].levelno == logging.ERROR
    await mw.aclose()


@pytest.mark.anyio
async def test_unknown_scope_types_pass_through() -> None:
    """Scope types other than http/websocket/lifespan reach the app untouched and unrecorded."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([])
    await mw({"type": "custom"}, server.receive, server.send)
    await mw.flush()
    assert seen == ["custom"] and sink.records == []
