"""Pick a decision backend for the ``storage=`` argument of the middleware.

=================================  =============================================================
``storage=``                       backend
=================================  =============================================================
``"memory://"``,                   :class:`FlatMemoryStorage` (in process, constant cost)
``"extapi-memory://"``, instance
``"redis://"``, ``"unix://"``      :class:`PipelinedRedisBackend` (one Lua call per request on one
                                   auto-pipelined connection, Redis time) behind
                                   :class:`FailoverBackend` (deadline + failure policy)
``"redis+cluster://"``             :class:`ClusterPipelinedBackend` (the lean path on one
                                   connection per master, routed by the principal's slot;
                                   redirections re-sent through redis-py) behind
                                   :class:`FailoverBackend`
``"rediss://"``,                   :class:`RedisBackend` (the same script through redis-py, for
``"rediss+cluster://"``,           its TLS options, its cluster client, or the master Sentinel
``"redis+sentinel://"``            names) behind :class:`FailoverBackend`
``LeasedRedis(url, ...)``          :class:`LeaseBackend` (local leases: a worker spends a
                                   block of budget leased from Redis) behind
                                   :class:`FailoverBackend`
``"async+...://"`` or a            :class:`LimitsBackend` (``limits.aio`` strategies) behind
``limits.aio`` storage instance    :class:`FailoverBackend`
=================================  =============================================================
"""

from __future__ import annotations

from typing import Any

from limits.aio.storage import Storage as LimitsStorage

from extapi_kit._types import Clock
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.ratelimit._result import Backend
from extapi_kit.ratelimit.fallback import DEFAULT_PROBE_INTERVAL, FailoverBackend
from extapi_kit.ratelimit.limits_backend import LimitsBackend
from extapi_kit.ratelimit.memory import FlatMemoryStorage, MemoryBackend

__all__ = ["make_backend"]

_MEMORY_SCHEMES = ("memory", "extapi-memory")
_REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)


def _redis_backend(url: str, strategy: int, deadline: float) -> Backend:
    # The lean client talks to one server; a cluster (slot routing, MOVED/ASK) and Sentinel
    # (master discovery) go through redis-py's own clients with the same script.
    if url.lower().startswith("redis+cluster:"):
        from extapi_kit.ratelimit.redis_cluster import ClusterPipelinedBackend

        # The lean path on every master, routed by the principal's slot.
        return ClusterPipelinedBackend(url, strategy, deadline=deadline)
    if url.lower().startswith(("redis:", "unix:")):
        from extapi_kit.ratelimit.redis_pipeline import PipelinedRedisBackend
        from extapi_kit.stores._resp import AutoPipeline

        # The lean path: one auto-pipelined connection, pre-encoded script calls, and the
        # deadline kept per batch by the pipe's watchdog (no timer per call).
        pipe = AutoPipeline(url, connect_timeout=deadline, deadline=deadline)
        return PipelinedRedisBackend(pipe, strategy, deadline=deadline)

    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from extapi_kit.ratelimit.redis import RedisBackend
    from extapi_kit.stores._redis import redis_from_url

    # TLS, Cluster and Sentinel stay on redis-py. The middleware owns the deadline: no
    # client-side retries hiding inside it. Every command runs under FailoverBackend's
    # asyncio.timeout(deadline) (and ping under its own), so the client needs no per-command
    # socket timeout (redis-py's costs a task per command on 3.11); a cancelled command
    # disconnects its connection, so no reply is left for the next caller.
    client = redis_from_url(
        url, socket_timeout=None, connect_timeout=deadline, retry=Retry(NoBackoff(), 0)
    )
    return RedisBackend(client, strategy, deadline=deadline)


def make_backend(
    storage: str | LimitsStorage | Any,
    strategy: int,
    *,
    clock: Clock,
    deadline: float,
    failure_mode: str = "open",
    fallback_divisor: int = 1,
    probe_interval: float = DEFAULT_PROBE_INTERVAL,
) -> tuple[Backend, bool]:
    """Return ``(backend, in_process)`` for a storage URL or object.

    Args:
        storage: a URL (see the module table) or a ``limits.aio`` storage instance.
        strategy: the strategy code.
        clock: epoch-seconds callable.
        deadline: seconds a shared-storage decision may take.
        failure_mode: ``"open"`` or ``"closed"``.
        fallback_divisor: budget divisor for the in-process fallback.
        probe_interval: seconds between probes of a failing storage.

    Raises:
        ConfigurationError: for an unknown scheme or a storage lacking the strategy.
    """
    if isinstance(storage, FlatMemoryStorage):
        return MemoryBackend(storage, strategy), True
    primary: Backend
    from extapi_kit.ratelimit.leases import LeasedRedis

    if isinstance(storage, LeasedRedis):
        # Local leases (off by default): blocks of budget held per worker, see leases.py.
        primary = storage.backend(deadline=deadline)
    elif isinstance(storage, str):
        scheme = storage.partition("://")[0].lower() if "://" in storage else ""
        if scheme in _MEMORY_SCHEMES:
            return MemoryBackend(FlatMemoryStorage(clock=clock), strategy), True
        if scheme in _REDIS_SCHEMES:
            primary = _redis_backend(storage, strategy, deadline)
        elif scheme.startswith("async+"):
            from limits.storage import storage_from_string

            options: dict[str, Any] = {}
            if scheme.startswith("async+redis"):
                # Use redis-py (our dependency; limits defaults to coredis) with deadlines set.
                options = {
                    "implementation": "redispy",
                    "socket_timeout": deadline,
                    "socket_connect_timeout": deadline,
                }
            try:
                limits_storage = storage_from_string(storage, **options)
            except Exception as exc:
                raise ConfigurationError(f"cannot create rate-limit storage: {exc}") from exc
            primary = _limits_backend(limits_storage, strategy, owned=True)
        else:
            raise ConfigurationError(
                f"unknown rate-limit storage {storage!r}; use memory://, redis://, rediss://, "
                "unix://, redis+cluster://, redis+sentinel://, an async+...:// limits URL, "
                "or a limits.aio storage instance"
            )
    elif isinstance(storage, LimitsStorage):
        primary = _limits_backend(storage, strategy)
    else:
        raise ConfigurationError(f"unsupported rate-limit storage: {type(storage).__name__}")
    backend = FailoverBackend(
        primary,
        strategy,
        clock=clock,
        deadline=deadline,
        failure_mode=failure_mode,
        fallback_divisor=fallback_divisor,
        probe_interval=probe_interval,
    )
    return backend, False


def _limits_backend(storage: Any, strategy: int, *, owned: bool = False) -> Backend:
    try:
        return LimitsBackend(storage, strategy, owned=owned)
    except NotImplementedError as exc:
        raise ConfigurationError(f"this storage does not support the strategy: {exc}") from exc
