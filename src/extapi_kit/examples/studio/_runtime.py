"""Process plumbing for the studio example: run an ASGI app's lifespan, serve a side app.

Starlette does not run the lifespans of mounted apps, so the composed server drives the built
stack's lifespan itself (it starts the audit writer and closes the upstream client), and serves
the render-farm tool on its own 127.0.0.1 port inside the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from extapi_kit._types import ASGIApp, Message

__all__ = ["bind_loopback", "run_lifespan", "serve_on_socket"]

# Set inside the nested server's task: its "Started/Finished server process" lines are dropped so
# the outer server's log reads as one server (filters run in the emitting task's context).
_nested: contextvars.ContextVar[bool] = contextvars.ContextVar("studio_nested", default=False)


class _QuietNested(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _nested.get()


_FILTER = _QuietNested()


def bind_loopback(port: int = 0) -> socket.socket:
    """Return a TCP socket bound to 127.0.0.1 (a free port by default).

    Args:
        port: the port, 0 for any free one.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextlib.asynccontextmanager
async def run_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan around the block (an app without one is accepted).

    Args:
        app: the ASGI app.
    """
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def main() -> None:
        await app(scope, inbox.get, outbox.put)

    task = asyncio.create_task(main())

    async def answer(expected: str) -> bool:
        getter = asyncio.create_task(outbox.get())
        done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            return False  # the app ended its lifespan without answering: it has none
        message = getter.result()
        if message["type"].endswith(".failed"):
            raise RuntimeError(f"{expected} failed: {message.get('message', '')}")
        return True

    await inbox.put({"type": "lifespan.startup"})
    running = await answer("lifespan startup")
    try:
        yield
    finally:
        if running and not task.done():
            await inbox.put({"type": "lifespan.shutdown"})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(answer("lifespan shutdown"), timeout=10)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def serve_on_socket(app: ASGIApp, sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``app`` with uvicorn on an already bound socket for the duration of the block.

    Args:
        app: the ASGI app.
        sock: the bound socket (closed afterwards).
    """
    # log_config/log_level None: leave the outer server's logging configuration alone.
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level=None, access_log=False)
    server = uvicorn.Server(config)
    # The outer server owns SIGINT/SIGTERM; this nested one must not capture them.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    async def run() -> None:
        _nested.set(True)
        await server.serve(sockets=[sock])

    logging.getLogger("uvicorn.error").addFilter(_FILTER)
    task = asyncio.create_task(run())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the tool server exited before starting")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)
        sock.close()
