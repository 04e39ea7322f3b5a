"""Redis client creation shared by every Redis-backed store.

Timeouts are always set: a hung Redis (SIGSTOP, ``DEBUG SLEEP``, ``CLIENT PAUSE``) must surface as
an error within a deadline, never hang a request (anchors-reliability §0.4).

Three topologies, named the way ``limits`` names its storages:

* ``redis://host:6379/0``, ``rediss://...``, ``unix:///path``: one server;
* ``redis+cluster://[user:pass@]host1:port1,host2:port2/``: a Redis Cluster
  (``redis.asyncio.cluster.RedisCluster``: ``MOVED``/``ASK`` followed, the slot map refreshed on a
  failover, ``CLUSTERDOWN``/``TRYAGAIN`` retried a few times within the deadline, then a
  :class:`StoreUnavailableError`). Every multi-key script or transaction of the stores keeps its
  keys under one ``{hash tag}``;
* ``redis+sentinel://[:pass@]host1:port1,host2:port2/<service>[/db]``: the master Sentinel names
  for ``<service>`` (``redis.asyncio.sentinel``), re-discovered after a failover.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote

from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "CLUSTER_SCHEMES",
    "DEFAULT_REDIS_TIMEOUT",
    "SENTINEL_SCHEMES",
    "is_cluster",
    "pop_client_options",
    "redis_address",
    "redis_call",
    "redis_from_url",
    "split_hosts",
    "wrap_redis_error",
]

T = TypeVar("T")

DEFAULT_REDIS_TIMEOUT = 0.5
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
# Attempts a cluster command gets across a redirection, CLUSTERDOWN or a dead node (each one
# bounded by the socket/connect timeouts): enough to ride a MOVED after a failover, small enough
# that a cluster without a master for a slot surfaces as StoreUnavailableError quickly.
_CLUSTER_ATTEMPTS = 3


def split_hosts(url: str) -> tuple[str, str | None, str | None, list[tuple[str, int]], str, str]:
    """Parse ``scheme://[user:pass@]h1:p1,h2:p2/path?query`` (urlsplit cannot: several hosts).

    Returns ``(scheme, user, password, [(host, port), ...], path, query)``.

    Args:
        url: the URL.
    """
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    path, _, query = (slash + tail).partition("?")
    if not slash:
        netloc, _, query = netloc.partition("?")
    user: str | None = None
    password: str | None = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        name, colon, secret = auth.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    hosts: list[tuple[str, int]] = []
    for part in filter(None, netloc.split(",")):
        host, _, port = part.rpartition(":")
        try:
            hosts.append((host.strip("[]") or "127.0.0.1", int(port)))
        except ValueError:
            raise ConfigurationError(
                f"invalid {scheme}:// URL: every host needs host:port"
            ) from None
    if not hosts:
        raise ConfigurationError(f"invalid {scheme}:// URL: no host:port given")
    return scheme.lower(), user, password, hosts, path, query


def is_cluster(client: Any) -> bool:
    """Return whether ``client`` is a Redis Cluster client (keys must then share hash tags).

    Args:
        client: a client made by :func:`redis_from_url`.
    """
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _cluster_from_url(
    url: str,
    *,
    socket_timeout: float | None,
    connect_timeout: float,
    max_connections: int,
    options: dict[str, Any],
) -> Any:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    scheme, user, password, hosts, path, query = split_hosts(url)
    if path.strip("/") not in ("", "0"):
        raise ConfigurationError("a Redis Cluster has only database 0: drop the path")
    extra = dict(parse_qsl(query))
    if extra:
        raise ConfigurationError(f"unknown {scheme}:// URL option(s): {', '.join(sorted(extra))}")
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts],
        username=user,
        password=password,
        ssl=scheme.startswith("rediss"),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        max_connections=max_connections,
        **{"retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), _CLUSTER_ATTEMPTS), **options},
    )


def _sentinel_from_url(
    url: str,
    *,
    socket_timeout: float | None,
    connect_timeout: float,
    max_connections: int,
    options: dict[str, Any],
) -> Any:
    from redis.asyncio.sentinel import Sentinel

    scheme, user, password, hosts, path, query = split_hosts(url)
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ConfigurationError(f"a {scheme}:// URL names the service: .../<service>[/db]")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ConfigurationError(f"invalid database in {scheme}:// URL") from None
    extra = dict(parse_qsl(query))
    sentinel_password = extra.pop("sentinel_password", None)
    if extra:
        raise ConfigurationError(f"unknown {scheme}:// URL option(s): {', '.join(sorted(extra))}")
    deadline = socket_timeout if socket_timeout is not None else connect_timeout
    sentinel = Sentinel(
        hosts,
        # The sentinels themselves get deadlines too: a dead sentinel is skipped quickly.
        sentinel_kwargs={
            "socket_timeout": deadline,
            "socket_connect_timeout": connect_timeout,
            "password": sentinel_password,
        },
        min_other_sentinels=0,
    )
    client = sentinel.master_for(
        parts[0],
        redis_class=_sentinel_master_class(),
        username=user,
        password=password,
        db=db,
        ssl=scheme.startswith("rediss"),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        max_connections=max_connections,
        health_check_interval=30,
        **options,
    )
    client.sentinel = sentinel
    return client


_SENTINEL_MASTER: Any = None


def _sentinel_master_class() -> Any:
    """A ``Redis`` whose ``aclose`` also closes its connections to the sentinels."""
    global _SENTINEL_MASTER
    if _SENTINEL_MASTER is None:
        from redis.asyncio import Redis

        class SentinelMaster(Redis):
            sentinel: Any = None

            async def aclose(self, close_connection_pool: bool | None = None) -> None:
                await super().aclose(close_connection_pool)
                for client in getattr(self.sentinel, "sentinels", ()):
                    await client.aclose()

        _SENTINEL_MASTER = SentinelMaster
    return _SENTINEL_MASTER


def redis_from_url(
    url: str,
    *,
    socket_timeout: float | None = DEFAULT_REDIS_TIMEOUT,
    connect_timeout: float = DEFAULT_REDIS_TIMEOUT,
    max_connections: int = 64,
    **options: Any,
) -> Redis:
    """Create a Redis client with deadlines always set.

    A ``redis+cluster://`` URL gives a ``redis.asyncio.cluster.RedisCluster`` (typed as ``Redis``:
    it has the same command API; check :func:`is_cluster` where behaviour must differ), a
    ``redis+sentinel://`` URL the master client of a ``redis.asyncio.sentinel.Sentinel``.

    Args:
        url: ``redis://host:port/db``, ``rediss://...``, ``redis+cluster://h1:p1,h2:p2/`` or
            ``redis+sentinel://h1:p1,h2:p2/<service>[/db]``.
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
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        make = _cluster_from_url if scheme in CLUSTER_SCHEMES else _sentinel_from_url
        return cast(
            "Redis",
            make(
                url,
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                options=options,
            ),
        )
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        max_connections=max_connections,
        health_check_interval=30,
        **options,
    )


def redis_address(client: Any) -> str | None:
    """Return where ``client`` connects, ``host:port`` (or ``unix:/path``), never a credential.

    Read from the client's connection settings, not from its error text (which may hold the
    URL). A Sentinel client names its service; a cluster client its first known node.

    Args:
        client: a ``redis.asyncio`` client (or None).
    """
    if client is None:
        return None
    try:
        node = client.get_default_node() if hasattr(client, "get_default_node") else None
        if node is not None:
            return f"cluster node {_host_port(node.host, node.port)}"
        pool = client.connection_pool
        service = getattr(pool, "service_name", None)
        if service:
            return f"sentinel service {service!r}"
        kwargs = pool.connection_kwargs
    except Exception:  # an unknown client shape: the message just names no address
        return None
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    if kwargs.get("host") is None:
        return None
    return _host_port(kwargs["host"], kwargs.get("port", 6379))


def _host_port(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def wrap_redis_error(exc: BaseException, client: Any = None) -> StoreError:
    """Map a redis-py or socket error to the library's error tree.

    Connection failures and timeouts become :class:`StoreUnavailableError` (callers apply their
    failure policy); anything else becomes :class:`StoreError`. The message names the error class
    and, given the client, the server's ``host:port`` (issue 18 §5: "redis unavailable:
    ConnectionError" left the operator guessing which Redis), read from the client's settings,
    so no credential or URL from the client's own message ends up in a log.

    Args:
        exc: the error raised by the client.
        client: the client that raised it, to name its address.
    """
    from redis.exceptions import (
        ClusterDownError,
        ReadOnlyError,
        RedisClusterException,
        SlotNotCoveredError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    # A cluster without a master for a slot (CLUSTERDOWN, or no node known for it), a slot
    # mid-migration (TRYAGAIN), or a write reaching a master Sentinel just
    # demoted (READONLY): all transient, all "unavailable" for the failure policy.
    unavailable = (
        RedisConnectionError,
        RedisTimeoutError,
        TimeoutError,
        OSError,
        ClusterDownError,
        TryAgainError,
        SlotNotCoveredError,
        ReadOnlyError,
    )
    # redis-py raises a bare RedisClusterException both for "no startup node reachable"
    # (transient) and for client-side misuse such as a cross-slot MGET (a bug: StoreError).
    if isinstance(exc, unavailable) or (
        type(exc) is RedisClusterException and "connect" in str(exc).lower()
    ):
        where = redis_address(client)
        at = f" at {where}" if where else ""
        return StoreUnavailableError(f"redis unavailable{at}: {type(exc).__name__}")
    return StoreError(f"redis error: {type(exc).__name__}")


async def redis_call(fn: Callable[[], Awaitable[T]], client: Any = None) -> T:
    """Await ``fn()`` and wrap any client error with :func:`wrap_redis_error`.

    Args:
        fn: a zero-argument coroutine function issuing the Redis commands.
        client: the client ``fn`` uses, so an error names its address.
    """
    try:
        return await fn()
    except Exception as exc:
        raise wrap_redis_error(exc, client) from exc


def pop_client_options(options: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the client options (timeouts) from a store's ``from_url`` options.

    Args:
        options: the keyword options given to ``from_url``; modified in place.
    """
    return {k: options.pop(k) for k in ("socket_timeout", "connect_timeout") if k in options}
