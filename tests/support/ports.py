"""Ports for servers the tests start as subprocesses, out of the way of outgoing connections.

A port bound to 0 comes from the kernel's ephemeral range, the same range every outgoing
connection takes its local port from; the suite opens thousands, so a port that was free when
picked could be some connection's by the time a redis-server or uvicorn child binds it (CI once
failed so). :func:`free_port` picks below that range instead, where the kernel never places an
outgoing connection, checks the port can be bound now, and never hands the same port out twice in
one process (a cluster picks twelve at once, before any node binds).
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

# Below the default ephemeral range (32768-60999) and above the well-known service ports this
# machine runs (PostgreSQL, Redis, MariaDB, RabbitMQ, Mosquitto, NATS all sit below 16000).
_LOW, _HIGH = 20000, 32767
_handed_out: set[int] = set()
_random = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a port on 127.0.0.1 that is free now and outside the ephemeral range.

    Falls back to a kernel-chosen port when the ephemeral range leaves no room below it.
    """
    low, _ = _ephemeral_range()
    top = min(_HIGH, low - 1)
    if top - _LOW >= 1000:
        for _ in range(200):
            port = _random.randint(_LOW, top)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
