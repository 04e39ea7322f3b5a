"""BodySizeLimitMiddleware driven with raw ASGI messages: R1, R2, R3, M1, 411, per-route limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from extapi_kit import ConfigurationError, RouteSettings, get_context
from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware

pytestmark = pytest.mark.anyio


@dataclass
class Echo:
    """An app that reads the whole body like a careful framework and records what it saw."""

    calls: int = 0
    seen: int = 0
    complete: bool = False
    disconnected: bool = False
    messages: list[Message] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        if scope["type"] != "http":
            self.messages.append({"type": scope["type"]})
            return
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            body += message.get("body", b"")
            self.seen = len(body)
            if not message.get("more_body", False):
                break
        self.complete = True
        payload = str(len(body)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})


@dataclass
class Result:
    status: int | None
    headers: dict[bytes, bytes]
    body: bytes
    pulled: int

    def problem(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.body)
        return doc


def http_scope(
    method: str = "POST", path: str = "/", headers: Sequence[tuple[bytes, bytes]] = ()
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": list(headers),
        "client": ("203.0.113.7", 1234),
    }


async def drive(
    app: object,
    scope: Scope,
    chunks: Sequence[bytes] = (b"",),
    *,
    disconnect: bool = False,
) -> Result:
    """Call an app with ``chunks`` as the body; ``disconnect`` ends it without more_body=False."""
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            last = pulled == len(chunks) and not disconnect
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": not last}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[operator]
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Result(
        status=start["status"] if start else None,
        headers=dict(start["headers"]) if start else {},
        body=body,
        pulled=pulled,
    )


async def test_content_length_over_limit_is_413_before_the_app_runs() -> None:
    """R1: a Content-Length above the limit gets 413 + Connection: close, no body byte is read."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, max_body=100)
    result = await drive(app, http_scope(headers=[(b"content-length", b"101")]), [b"x" * 101])
    assert result.status == 413
    assert result.headers[b"connection"] == b"close"
    assert result.problem()["type"] == "https://extapi-kit.dev/problems/request-too-large"
    assert result.problem()["max_body"] == 100
    assert result.pulled == 0
    assert echo.calls == 0


async def test_content_length_over_limit_records_rejection_on_context() -> None:
    """R1: the 413 is recorded on the request context for the audit layer."""
    scope = http_scope(headers=[(b"content-length", b"5000")])
    await drive(BodySizeLimitMiddleware(Echo(), max_body="1KiB"), scope)
    assert get_context(scope).rejection == "request-too-large"


async def test_content_length_at_limit_passes_through() -> None:
    """R1: a body of exactly the limit reaches the app whole."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, max_body=100)
    result = await drive(app, http_scope(headers=[(b"content-length", b"100")]), [b"x" * 100])
    assert (result.status, result.body) == (200, b"100")
    assert echo.complete


@pytest.mark.parametrize("read_ahead", [0, 1000], ids=["streamed", "read-ahead"])
async def test_chunked_body_over_limit_is_413_and_app_sees_at_most_the_limit(
    read_ahead: int,
) -> None:
    """R2: a chunked body over the limit gets 413 (never 200), the app sees <= limit bytes."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, max_body=100, read_ahead_limit=read_ahead)
    result = await drive(app, http_scope(), [b"x" * 40] * 10)
    assert result.status == 413
    assert result.headers[b"connection"] == b"close"
    assert echo.seen <= 100
    assert not echo.complete
    # limit + 1 chunk at most: the third chunk crosses 100 and nothing after it is pulled.
    assert result.pulled == 3


async def test_chunked_over_limit_in_read_ahead_mode_never_calls_the_app() -> None:
    """R2: with read-ahead the decision is made before the app runs."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, max_body=100, read_ahead_limit=100)
    result = await drive(app, http_scope(), [b"x" * 60, b"x" * 60])
    assert result.status == 413
    assert echo.calls == 0


@pytest.mark.parametrize("read_ahead", [0, 1000], ids=["streamed", "read-ahead"])
async def test_chunked_body_under_limit_reaches_app_byte_for_byte(read_ahead: int) -> None:
    """R2: a chunked body within the limit is delivered whole and complete."""
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            seen.append(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    chunks = [b"a" * 30, b"", b"b" * 30, b"c" * 40]
    mw = BodySizeLimitMiddleware(app, max_body=100, read_ahead_limit=read_ahead)
    result = await drive(mw, http_scope(), chunks)
    assert result.status == 204
    assert b"".join(seen) == b"".join(chunks)


async def test_lying_content_length_is_held_to_the_limit_by_real_bytes() -> None:
    """R3: Content-Length says 10 but 500 bytes arrive: real bytes are counted, 413."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, max_body=100)
    result = await drive(app, http_scope(headers=[(b"content-length", b"10")]), [b"x" * 50] * 10)
    assert result.status == 413
    assert echo.seen <= 100
    assert not echo.complete


@pytest.mark.parametrize(
    "values",
    [
        [b"abc"],
        [b"-1"],
        [b"+5"],
        [b"5.0"],
        [b""],
        [b"0x10"],
        [b"1e3"],
        [b"\xd9\xa3"],  # Arabic-Indic digit three: str.isdigit() would accept it
        [b"5, 6"],
        [b"5", b"6"],
        [b"5,"],
    ],
)
async def test_malformed_or_conflicting_content_length_is_400(values: list[bytes]) -> None:
    """R3: malformed, negative or duplicated-and-different Content-Length -> 400, app not run."""
    echo = Echo()
    headers = [(b"content-length", v) for v in values]
    result = await drive(BodySizeLimitMiddleware(echo), http_scope(headers=headers), [b"x" * 5])
    assert result.status == 400
    assert result.problem()["type"] == "https://extapi-kit.dev/problems/invalid-content-length"
    assert result.headers[b"connection"] == b"close"
    assert echo.calls == 0


@pytest.mark.parametrize("values", [[b"5", b"5"], [b"5, 5"], [b" 5 "]])
async def test_repeated_identical_content_length_is_accepted(values: list[bytes]) -> None:
    """R3: RFC 9110 §8.6 lets a recipient accept a length repeated with the same value."""
    headers = [(b"content-length", v) for v in values]
    result = await drive(BodySizeLimitMiddleware(Echo()), http_scope(headers=headers), [b"x" * 5])
    assert (result.status, result.body) == (200, b"5")


async def test_transfer_encoding_with_content_length_is_400() -> None:
    """R3: Transfer-Encoding together with Content-Length (a smuggling signal) is refused."""
    headers = [(b"transfer-encoding", b"chunked"), (b"content-length", b"5")]
    result = await drive(BodySizeLimitMiddleware(Echo()), http_scope(headers=headers), [b"x" * 5])
    assert result.status == 400


async def test_absurdly_long_content_length_is_413_not_500() -> None:
    """R3: a 5,000-digit Content-Length (beyond int()'s digit limit) is a clean 413."""
    headers = [(b"content-length", b"9" * 5000)]
    result = await drive(BodySizeLimitMiddleware(Echo()), http_scope(headers=headers))
    assert result.status == 413


@pytest.mark.parametrize("read_ahead", [0, 1000], ids=["streamed", "read-ahead"])
async def test_disconnect_mid_body_is_passed_on_as_disconnect(read_ahead: int) -> None:
    """M1: 30 of 100 bytes then disconnect: the app gets http.disconnect, never a complete body."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, max_body=100, read_ahead_limit=read_ahead)
    scope = http_scope()
    result = await drive(app, scope, [b"x" * 10] * 3, disconnect=True)
    assert result.status is None
    assert echo.disconnected
    assert not echo.complete
    assert echo.seen == 30
    assert all(m.get("more_body", True) for m in echo.messages if m["type"] == "http.request")
    if read_ahead:
        assert get_context(scope).extra["client_disconnected"] is True


async def test_write_without_length_is_411_when_required() -> None:
    """411: with require_length, a chunked POST is refused before the app runs."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo, require_length=True)
    result = await drive(app, http_scope("POST"), [b"x"])
    assert result.status == 411
    assert echo.calls == 0
    assert (await drive(app, http_scope("GET"))).status == 200
    with_length = http_scope("PUT", headers=[(b"content-length", b"1")])
    assert (await drive(app, with_length, [b"x"])).status == 200


async def test_path_rules_use_the_longest_segment_prefix() -> None:
    """Per-path limits: the longest matching prefix wins, matched per path segment."""
    rules: dict[str, int | str] = {"/upload": "1KiB", "/upload/big": 5000}
    app = BodySizeLimitMiddleware(Echo(), max_body=10, rules=rules)

    async def status(path: str, size: int) -> int | None:
        scope = http_scope(path=path, headers=[(b"content-length", str(size).encode())])
        return (await drive(app, scope, [b"x" * size])).status

    assert await status("/upload", 1024) == 200
    assert await status("/upload/x", 1025) == 413
    assert await status("/upload/big/file", 5000) == 200
    assert await status("/uploads", 11) == 413
    assert await status("/other", 10) == 200


async def test_route_body_limit_overrides_default_and_rules() -> None:
    """Per-route: RouteSettings.body_limit from the registry beats rules and max_body."""
    app = BodySizeLimitMiddleware(Echo(), max_body=10, rules={"/": 20})
    scope = http_scope(headers=[(b"content-length", b"50")])
    get_context(scope).route = RouteSettings(template="/", method="POST", body_limit=50)
    assert (await drive(app, scope, [b"x" * 50])).status == 200
    scope = http_scope(headers=[(b"content-length", b"21")])
    assert (await drive(app, scope, [b"x" * 21])).status == 413


async def test_app_error_after_413_is_swallowed_but_other_errors_propagate() -> None:
    """R2: an app raising on the disconnect after our 413 gives no 500; real bugs still raise."""

    async def raising(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        raise RuntimeError("client went away")

    app = BodySizeLimitMiddleware(raising, max_body=10, read_ahead_limit=0)
    assert (await drive(app, http_scope(), [b"x" * 8] * 3)).status == 413
    with pytest.raises(RuntimeError):
        await drive(app, http_scope(), [b"x" * 8], disconnect=True)


async def test_lifespan_and_websocket_pass_through_untouched() -> None:
    """M5: lifespan and websocket scopes reach the app unchanged (no header access, no context)."""
    echo = Echo()
    app = BodySizeLimitMiddleware(echo)
    for kind in ("lifespan", "websocket"):
        scope: Scope = {"type": kind}
        await drive(app, scope)
        assert scope == {"type": kind}
    assert echo.calls == 2


async def test_default_limit_is_one_mebibyte_and_cannot_be_disabled_by_accident() -> None:
    """A13: the default enforces 1 MiB; None or nonsense sizes refuse to start."""
    app = BodySizeLimitMiddleware(Echo())
    assert app.max_body == 1024 * 1024
    with pytest.raises(ConfigurationError):
        BodySizeLimitMiddleware(Echo(), max_body=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        BodySizeLimitMiddleware(Echo(), max_body="lots")
    with pytest.raises(ConfigurationError):
        BodySizeLimitMiddleware(Echo(), rules={"upload": 10})


async def test_through_httpx_chunked_stream_gets_problem_json() -> None:
    """R2: over the ASGI transport a chunked upload over the limit gets a 413 problem+json."""

    async def body() -> object:
        for _ in range(10):
            yield b"y" * 1000

    app = BodySizeLimitMiddleware(Echo(), max_body="4KB")
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/", content=body())  # type: ignore[arg-type]
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413
