"""ASGI plumbing for the idempotency middleware: buffer requests, capture and replay responses."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Literal

from extapi_kit._types import Message, Receive, Send
from extapi_kit.idempotency._base import StoredResponse

__all__ = [
    "REPLAYED_HEADER",
    "ResponseCapture",
    "filter_replay_headers",
    "read_body",
    "replay_receive",
    "send_stored",
]

REPLAYED_HEADER = (b"idempotent-replayed", b"true")

# Not replayed: hop-by-hop headers (RFC 9110 §7.6.1), the original Date, and rate-limit headers
# (the rate limiter outside this layer adds fresh ones to the replay).
_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"ratelimit",
        b"ratelimit-policy",
    }
)

BodyState = Literal["complete", "disconnected", "overflow"]


async def read_body(receive: Receive, cap: int) -> tuple[list[bytes], BodyState]:
    """Read the request body until its end, a disconnect, or more than ``cap`` bytes.

    A disconnect is an abort, never the end of the body (anchors-reliability §0.7: treating it as
    the end handed a 30 KB prefix of a 100 KB body to the app).

    Args:
        receive: the ASGI receive callable.
        cap: the most bytes to buffer.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return chunks, "disconnected"
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            return chunks, "complete"
        if size > cap:
            return chunks, "overflow"


def replay_receive(chunks: list[bytes], receive: Receive, *, complete: bool) -> Receive:
    """Return a receive callable: the buffered body first, then the original ``receive``.

    Args:
        chunks: the buffered body chunks.
        receive: the original receive callable.
        complete: whether the buffered chunks are the whole body.
    """
    pending: list[Message] = [
        {"type": "http.request", "body": b"".join(chunks), "more_body": not complete}
    ]

    async def _receive() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return _receive


def filter_replay_headers(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """Return the response headers worth storing for a replay.

    Args:
        headers: the raw response headers the app sent.
    """
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        low = bytes(name).lower()
        if low in _DROP or low.startswith(b"x-ratelimit-"):
            continue
        out.append((low, bytes(value)))
    return tuple(out)


class ResponseCapture:
    """Forward a response to the client while keeping a copy of up to ``cap`` body bytes.

    Args:
        send: the downstream send callable.
        cap: the most body bytes to keep; beyond it the copy is dropped (``truncated``).
    """

    __slots__ = ("_cap", "_send", "body", "complete", "headers", "size", "status", "truncated")

    def __init__(self, send: Send, cap: int) -> None:
        self._send = send
        self._cap = cap
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.complete = False

    def send(self, message: Message) -> Awaitable[None]:
        """The send callable to hand to the app.

        Args:
            message: an ASGI message.
        """
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            chunk = message.get("body", b"")
            if chunk and not self.truncated:
                self.size += len(chunk)
                if self.size > self._cap:
                    self.truncated = True
                    self.body.clear()
                else:
                    self.body.append(bytes(chunk))
            if not message.get("more_body", False):
                self.complete = True
        elif kind == "http.response.pathsend":
            # A file sent by path (ASGI pathsend extension) cannot be captured: treat as too large.
            self.truncated = True
            self.body.clear()
            self.complete = True
        return self._send(message)

    def stored(self) -> StoredResponse:
        """Return the captured response as a record to store."""
        return StoredResponse(
            status=self.status,
            headers=filter_replay_headers(self.headers),
            body=b"" if self.truncated else b"".join(self.body),
            truncated=self.truncated,
        )


async def send_stored(send: Send, stored: StoredResponse) -> None:
    """Send a stored response, marked with ``Idempotent-Replayed: true``.

    Args:
        send: the ASGI send callable.
        stored: the stored response.
    """
    headers = list(stored.headers)
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(stored.body)).encode()))
    headers.append(REPLAYED_HEADER)
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})
