"""Path tricks sent as raw request targets to the registry served by uvicorn on 127.0.0.1 (Z2)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from extapi_kit.routing import ExternalAPI
from tests.routing.conftest import make_internal_app
from tests.routing.upstream_server import UvicornThread


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    """The registry (internal app behind it) under uvicorn with proxy headers off."""
    internal = make_internal_app()
    api = ExternalAPI()
    api.expose("GET", "/projects/{id:int}", to=internal, path="/internal/projects/{id}")
    api.expose("GET", "/echo/{rest:path}", to=internal, path="/internal/echo/{rest}")
    thread = UvicornThread(api)
    thread.start()
    try:
        yield "127.0.0.1", thread.port
    finally:
        thread.stop()


def _status(addr: tuple[str, int], target: bytes, method: bytes = b"GET") -> int:
    with socket.create_connection(addr, timeout=5) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "target",
    [
        b"//api/v1/projects/7",
        b"/api/v1/./projects/7",
        b"/api/v1/projects/../../../internal/admin",
        b"/api/v1/echo/../../../internal/admin",
        b"/api/v1/echo/%2e%2e/%2e%2e/%2e%2e/internal/admin",
        b"/api/v1/echo/..%2f..%2f..%2finternal%2fadmin",
        b"/api/v1/echo//internal/admin",
        b"/API/v1/projects/7",
        b"/api/v1/projects/7/",
        b"/api/v1/projects/7;admin",
        b"/internal/admin",
        b"/internal/projects/7",
        b"http://t/internal/admin",
        b"internal/admin",
        b"*",
    ],
)
def test_raw_targets_never_reach_internal_routes(server: tuple[str, int], target: bytes) -> None:
    """Z2: each raw request target is refused by uvicorn (400) or the registry (404)."""
    assert _status(server, target) in (400, 404)


def test_declared_route_answers(server: tuple[str, int]) -> None:
    """The canonical path and its percent-encoded spelling get the declared route's answer."""
    assert _status(server, b"/api/v1/projects/7") == 200
    assert _status(server, b"/api/v1/%70rojects/7") == 200
    assert _status(server, b"/api/v1/projects/7", method=b"get") == 405
