"""Redis client creation shared by every Redis-backed store.

Timeouts are always set: a hung Redis (SIGSTOP, ``DEBUG SLEEP``, ``CLIENT PAUSE``) must surface as
an error within a deadline, never hang a request (anchors-reliability §0.4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_REDIS_TIMEOUT",
    "pop_client_options",
    "redis_call",
    "redis_from_url",
    "wrap_redis_error",
]

T = TypeVar("T")

DEFAULT_REDIS_TIMEOUT = 0.5


def redis_from_url(
    url: str,
    *,
    socket_timeout: float | None = DEFAULT_REDIS_TIMEOUT,
    connect_timeout: float = DEFAULT_REDIS_TIMEOUT,
    max_connections: int = 64,
    **options: Any,
) -> Redis:
    """Create a ``redis.asyncio.Redis`` client with deadlines always set.

    Args:
        url: ``redis://host:port/db`` or ``rediss://...``.
        socket_timeout: seconds a command may take before it fails. ``None`` only for a caller
            that bounds every command itself (``asyncio.timeout``): redis-py then skips its own
            per-command ``asyncio.wait_for``, which on Python 3.11 costs a task per command.
            The connect timeout always stays set.
        connect_timeout: seconds a connection attempt may take.
        max_connections: pool size.
        **options: passed to ``Redis.from_url``.

    Raises:
        ConfigurationError: when the ``redis`` package is not installed.
    """
    try:
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError(
            "Redis stores need the redis client: pip install 'extapi-kit[redis]'"
        ) from exc
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        max_connections=max_connections,
        health_check_interval=30,
        **options,
    )


def wrap_redis_error(exc: BaseException) -> StoreError:
    """Map a redis-py or socket error to the library's error tree.

    Connection failures and timeouts become :class:`StoreUnavailableError` (callers apply their
    failure policy); anything else becomes :class:`StoreError`. The message names the error class
    only, so no server address or credential from the client's message ends up in a log.

    Args:
        exc: the error raised by the client.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, RedisConnectionError | RedisTimeoutError | TimeoutError | OSError):
        return StoreUnavailableError(f"redis unavailable: {type(exc).__name__}")
    return StoreError(f"redis error: {type(exc).__name__}")


async def redis_call(fn: Callable[[], Awaitable[T]]) -> T:
    """Await ``fn()`` and wrap any client error with :func:`wrap_redis_error`.

    Args:
        fn: a zero-argument coroutine function issuing the Redis commands.
    """
    try:
        return await fn()
    except Exception as exc:
        raise wrap_redis_error(exc) from exc


def pop_client_options(options: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the client options (timeouts) from a store's ``from_url`` options.

    Args:
        options: the keyword options given to ``from_url``; modified in place.
    """
    return {k: options.pop(k) for k in ("socket_timeout", "connect_timeout") if k in options}
