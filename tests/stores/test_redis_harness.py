"""The test harness's private redis-server survives a port taken between choosing and binding.

CI once failed at setup because a port ``free_port()`` returned a moment earlier was held by
another process when a cluster node bound it (``redis-server exited with 1``). The first start
now retries on fresh ports; a restart keeps its ports, and a port the caller fixed is never moved.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.skipif(not RedisServer.available(), reason="redis-server not installed")

_CLUSTER = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def test_a_chosen_port_found_taken_is_replaced(taken_port: int) -> None:
    server = RedisServer(cluster_bus=True, extra=_CLUSTER)
    server.port = taken_port
    try:
        server.start()
        assert server.port != taken_port
        port = server.port
        server.restart()
        assert server.port == port
    finally:
        server.stop()


def test_a_cluster_bus_port_found_taken_is_replaced(taken_port: int) -> None:
    server = RedisServer(cluster_bus=True, extra=_CLUSTER)
    server.cluster_bus_port = taken_port
    try:
        server.start()
        assert server.cluster_bus_port != taken_port
    finally:
        server.stop()


def test_a_fixed_port_taken_fails_and_says_why(taken_port: int) -> None:
    server = RedisServer(port=taken_port)
    with pytest.raises(RuntimeError, match="Address already in use"):
        server.start()
    server.stop()
