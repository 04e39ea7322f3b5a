"""Hold back a target's 2xx answer so the registry can rewrite it before it leaves.

Shared by the response-model filter (``targets.py``) and the resource-grant filter
(``grant_filter.py``): the start message of a 2xx answer with a body is kept, body chunks are
collected up to a cap, and the subclass's ``_finish`` sends the rewritten answer. Everything else
(errors, 204, other message types) passes straight through.
"""

from __future__ import annotations

from extapi_kit._types import Message, Scope, Send
from extapi_kit.problems import send_problem

__all__ = ["MAX_BUFFERED", "BufferedAnswer"]

# Answers larger than this are refused (502) rather than held in memory.
MAX_BUFFERED = 16 * 1024 * 1024


class BufferedAnswer:
    """Collect a 2xx answer's body, then hand it to :meth:`_finish`.

    Args:
        scope: the request scope.
        send: the ASGI send to wrap.
    """

    __slots__ = ("_body", "_cut", "_on", "_scope", "_send", "_start")

    # The detail of the 502 sent when the answer exceeds MAX_BUFFERED.
    too_large = "response too large"

    def __init__(self, scope: Scope, send: Send) -> None:
        self._scope, self._send = scope, send
        self._start: Message | None = None
        self._on = False
        self._cut = False  # a 502 was sent: the rest of the body is dropped
        self._body = bytearray()

    async def send(self, message: Message) -> None:
        """The wrapped send.

        Args:
            message: an ASGI message from the target.
        """
        if message["type"] == "http.response.start":
            self._on = 200 <= message["status"] < 300 and message["status"] != 204
            if self._on:
                self._start = message
            else:
                await self._send(message)
            return
        if message["type"] == "http.response.body" and self._cut:
            return  # the problem above completed the response; nothing may follow it
        if message["type"] != "http.response.body" or not self._on:
            await self._send(message)
            return
        self._body += message.get("body", b"")
        if len(self._body) > MAX_BUFFERED:
            self._on, self._cut = False, True
            await send_problem(self._send, "bad-gateway", self.too_large, scope=self._scope)
            return
        if not message.get("more_body", False):
            self._on = False
            start = self._start
            if start is None:  # an internal invariant, not user input
                raise RuntimeError("set by the start message before any body")
            await self._finish(start, bytes(self._body))

    async def _finish(self, start: Message, body: bytes) -> None:
        raise NotImplementedError

    async def _respond(self, start: Message, body: bytes) -> None:
        """Send ``start`` with its Content-Length set for ``body``, then ``body``."""
        headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
