"""Resource consumption: slow bodies (R4) and multipart / urlencoded floods (R5)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.routing import ExternalAPI, HandlerRequest

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    item: str


def _api(calls: list[Any]) -> ExternalAPI:
    api = ExternalAPI()

    @api.post("/orders", request_model=Order, status_code=201, public=True)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        calls.append(req.body)
        return {"ok": True}

    return api


async def test_slow_body_is_cut_by_a_request_deadline() -> None:
    """R4: a body that sends one chunk then stalls is answered 408 within a configured deadline."""
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    stalled = asyncio.Event()

    async def receive() -> Message:
        if not stalled.is_set():
            stalled.set()
            return {"type": "http.request", "body": b"x", "more_body": True}
        await asyncio.Event().wait()  # the client never sends the rest
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    mw = BodySizeLimitMiddleware(app, max_body="1KiB", body_timeout="100ms")
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "client": None}
    try:  # bounded, so the gap shows as a failure instead of a hang
        async with asyncio.timeout(0.5):
            await mw(scope, receive, send)
    except TimeoutError:
        pass
    assert sent and sent[0]["status"] == 408


async def test_slow_body_with_content_length_is_cut_and_app_sees_a_disconnect() -> None:
    """R4: a declared-length body that stalls mid-way gives the app a disconnect, the client 408."""
    sent: list[Message] = []
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break

    first = True

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    mw = BodySizeLimitMiddleware(app, max_body="1MiB", read_ahead_limit=0, body_timeout=0.1)
    headers = [(b"content-length", b"100")]
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    async with asyncio.timeout(5):
        await mw(scope, receive, send)
    assert seen == ["http.request", "http.disconnect"]
    assert sent[0]["status"] == 408


async def test_body_deadline_does_not_apply_after_the_body() -> None:
    """R4: once the body is complete, waiting for a disconnect (streaming) is not bounded."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        waiter = asyncio.ensure_future(receive())
        await asyncio.sleep(0.3)  # longer than the body deadline
        assert not waiter.done()
        waiter.cancel()
        await send({"type": "http.response.body", "body": b"ok"})

    messages = iter([{"type": "http.request", "body": b"{}", "more_body": False}])

    async def receive() -> Message:
        try:
            return next(messages)
        except StopIteration:
            await asyncio.Event().wait()
            raise AssertionError("unreachable") from None

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    mw = BodySizeLimitMiddleware(app, body_timeout=0.1)
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await mw(scope, receive, send)
    assert sent[0]["status"] == 200


async def test_multipart_and_urlencoded_floods_are_never_parsed() -> None:
    """R5: multipart with 10k fields, a huge text part, a huge preamble and a urlencoded field
    flood never reach a parser: 413 over the body limit, 415 under it; never 200/500."""
    calls: list[Any] = []
    app = _api(calls).build(auth=False, body_limit="64KiB")
    boundary = "XyZ"
    many = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'
        for i in range(10_000)
    )
    small = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="item"\r\n\r\nv\r\n--{boundary}--'
    )
    cases = [
        (f"multipart/form-data; boundary={boundary}", many + f"--{boundary}--", 413),
        (f"multipart/form-data; boundary={boundary}", "p" * 200_000 + small, 413),
        (f"multipart/form-data; boundary={boundary}", small, 415),
        ("application/x-www-form-urlencoded", "&".join(f"a{i}=1" for i in range(20_000)), 413),
        ("application/x-www-form-urlencoded", "item=v;" * 100, 415),
    ]
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for ctype, body, expected in cases:
            r = await c.post("/api/v1/orders", content=body, headers={"content-type": ctype})
            assert r.status_code == expected, (ctype, len(body), r.status_code, r.text)
    assert calls == []
