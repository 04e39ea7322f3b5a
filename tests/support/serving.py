"""Serve an ASGI app with uvicorn on 127.0.0.1 for a test, without a port race.

A port chosen with a throwaway socket is only free a moment ago: an outgoing connection's
ephemeral port (the suite opens thousands) can take it before the server binds it. Here the
listening socket is bound first (port 0: the kernel picks a free port) and handed to uvicorn, so
the port is never free for anyone else in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1 (listen() is left to the server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop; yield its base URL (``http://127.0.0.1:PORT``).

    Args:
        app: the ASGI app.
        **config: ``uvicorn.Config`` options; ``log_level="warning"`` and ``proxy_headers=False``
            unless given. With ``ssl_certfile`` the URL is ``https://``.
    """
    sock = loopback_socket()
    port: int = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "proxy_headers": False, **config}
    scheme = "https" if options.get("ssl_certfile") else "http"
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    await task  # surface a startup failure
                    raise AssertionError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=10)
        finally:
            sock.close()
