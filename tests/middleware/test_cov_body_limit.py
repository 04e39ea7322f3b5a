"""Body limit after the response started (R2 streaming) and its configuration guard."""

from __future__ import annotations

import pytest

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.context import get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware

pytestmark = pytest.mark.anyio


def test_zero_body_timeout_is_refused() -> None:
    """A zero deadline would time out every body: refused at construction (None = no deadline)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    with pytest.raises(ConfigurationError, match="body_timeout"):
        BodySizeLimitMiddleware(app, body_timeout=0)
    with pytest.raises(ConfigurationError):
        BodySizeLimitMiddleware(app, body_timeout="0s")


async def test_limit_crossed_after_the_app_started_answering() -> None:
    """R2: a streaming app that already sent its status sees a disconnect, and keeps seeing one.

    The client already has a status, so no 413 can follow; the rejection is still recorded for
    the audit trail.
    """
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            msg = await receive()
            seen.append(msg)
            if msg["type"] == "http.disconnect":
                break
        seen.append(await receive())
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    mw = BodySizeLimitMiddleware(app, max_body=10, read_ahead_limit=0)
    incoming: list[Message] = [
        {"type": "http.request", "body": b"123456", "more_body": True},
        {"type": "http.request", "body": b"7890abcdef", "more_body": True},
        {"type": "http.request", "body": b"never read", "more_body": False},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": [(b"transfer-encoding", b"chunked")],
        "client": ("203.0.113.7", 1),
    }
    await mw(scope, receive, send)
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect", "http.disconnect"]
    assert sent[0]["status"] == 200
    assert get_context(scope).rejection == "request-too-large"
    assert len(incoming) == 1  # nothing was read past the limit
