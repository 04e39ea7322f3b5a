"""Errors of an unreachable Redis name its address, never its password (issue 18 §5)."""

from __future__ import annotations

import socket

import pytest

from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.keys.store_redis import RedisKeyStore
from extapi_kit.stores._redis import redis_address, redis_from_url

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_redis_names_host_port_not_the_password() -> None:
    """Issue 18 §5: "redis unavailable at 127.0.0.1:<port>: ConnectionError", and the URL's
    password appears nowhere in the message."""
    port = _closed_port()
    store = RedisKeyStore.from_url(f"redis://:pw-not-to-show@127.0.0.1:{port}/0")
    try:
        with pytest.raises(StoreUnavailableError) as info:
            await store.get("0123456789abcdefghijkl")
    finally:
        await store.aclose()
    message = str(info.value)
    assert message == f"redis unavailable at 127.0.0.1:{port}: ConnectionError"
    assert "pw-not-to-show" not in message + repr(info.value)


async def test_redis_address_of_unix_and_ipv6_clients() -> None:
    """Issue 18 §5: a unix socket client is named by its path, an IPv6 host in brackets."""
    unix = redis_from_url("unix:///tmp/redis.sock?password=pw")
    ipv6 = redis_from_url("redis://:pw@[::1]:6390/0")
    try:
        assert redis_address(unix) == "unix:/tmp/redis.sock"
        assert redis_address(ipv6) == "[::1]:6390"
        assert redis_address(None) is None and redis_address(object()) is None
    finally:
        await unix.aclose()
        await ipv6.aclose()
