"""Stores chosen by URL: ``memory://``, ``sqlite:///file.db``, ``redis://host:6379/0`` (also
``redis+cluster://h1:p1,h2:p2/`` and ``redis+sentinel://h1:p1,h2:p2/<service>``),
``postgresql://user@host:5432/db`` (``pip install 'extapi-kit[postgres]'``).

Each kind of store (``keys``, ``audit``, ``idempotency``, ``webhooks``, ``usage``) has a Protocol in
its feature package and built-ins registered here by URL scheme, the way ``limits`` registers its
storages. :func:`store_from_url` picks the implementation; users pass their own object instead of a
URL to plug in any other backend. Every store is async and has ``ping()`` and ``aclose()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from extapi_kit.exceptions import ConfigurationError

__all__ = ["register_store", "registered_schemes", "store_from_url"]

# kind -> scheme -> "module:attribute" (imported lazily) or a factory callable.
_REGISTRY: dict[str, dict[str, str | Callable[..., Any]]] = {
    "audit": {
        "memory": "extapi_kit.audit.sink_memory:MemorySink",
        "sqlite": "extapi_kit.audit.sink_sqlite:SQLiteSink",
        "redis": "extapi_kit.audit.sink_redis:RedisSink",
        "rediss": "extapi_kit.audit.sink_redis:RedisSink",
        "redis+cluster": "extapi_kit.audit.sink_redis:RedisSink",
        "rediss+cluster": "extapi_kit.audit.sink_redis:RedisSink",
        "redis+sentinel": "extapi_kit.audit.sink_redis:RedisSink",
        "rediss+sentinel": "extapi_kit.audit.sink_redis:RedisSink",
        "postgresql": "extapi_kit.audit.sink_postgres:PostgresSink",
        "postgres": "extapi_kit.audit.sink_postgres:PostgresSink",
    },
    "keys": {
        "memory": "extapi_kit.keys.store_memory:MemoryKeyStore",
        "sqlite": "extapi_kit.keys.store_sqlite:SQLiteKeyStore",
        "redis": "extapi_kit.keys.store_redis:RedisKeyStore",
        "rediss": "extapi_kit.keys.store_redis:RedisKeyStore",
        "redis+cluster": "extapi_kit.keys.store_redis:RedisKeyStore",
        "rediss+cluster": "extapi_kit.keys.store_redis:RedisKeyStore",
        "redis+sentinel": "extapi_kit.keys.store_redis:RedisKeyStore",
        "rediss+sentinel": "extapi_kit.keys.store_redis:RedisKeyStore",
        "postgresql": "extapi_kit.keys.store_postgres:PostgresKeyStore",
        "postgres": "extapi_kit.keys.store_postgres:PostgresKeyStore",
    },
    "idempotency": {
        "memory": "extapi_kit.idempotency.store_memory:MemoryIdempotencyStore",
        "sqlite": "extapi_kit.idempotency.store_sqlite:SQLiteIdempotencyStore",
        "redis": "extapi_kit.idempotency.store_redis:RedisIdempotencyStore",
        "rediss": "extapi_kit.idempotency.store_redis:RedisIdempotencyStore",
        "redis+cluster": "extapi_kit.idempotency.store_redis:RedisIdempotencyStore",
        "rediss+cluster": "extapi_kit.idempotency.store_redis:RedisIdempotencyStore",
        "redis+sentinel": "extapi_kit.idempotency.store_redis:RedisIdempotencyStore",
        "rediss+sentinel": "extapi_kit.idempotency.store_redis:RedisIdempotencyStore",
        "postgresql": "extapi_kit.idempotency.store_postgres:PostgresIdempotencyStore",
        "postgres": "extapi_kit.idempotency.store_postgres:PostgresIdempotencyStore",
    },
    "usage": {
        "memory": "extapi_kit.usage.store_memory:MemoryUsageStore",
        "sqlite": "extapi_kit.usage.store_sqlite:SQLiteUsageStore",
        "redis": "extapi_kit.usage.store_redis:RedisUsageStore",
        "rediss": "extapi_kit.usage.store_redis:RedisUsageStore",
        "redis+cluster": "extapi_kit.usage.store_redis:RedisUsageStore",
        "rediss+cluster": "extapi_kit.usage.store_redis:RedisUsageStore",
        "redis+sentinel": "extapi_kit.usage.store_redis:RedisUsageStore",
        "rediss+sentinel": "extapi_kit.usage.store_redis:RedisUsageStore",
        "postgresql": "extapi_kit.usage.store_postgres:PostgresUsageStore",
        "postgres": "extapi_kit.usage.store_postgres:PostgresUsageStore",
    },
    "plans": {
        "memory": "extapi_kit.plans.store_memory:MemoryPlanStore",
        "sqlite": "extapi_kit.plans.store_sqlite:SQLitePlanStore",
        "redis": "extapi_kit.plans.store_redis:RedisPlanStore",
        "rediss": "extapi_kit.plans.store_redis:RedisPlanStore",
        "redis+cluster": "extapi_kit.plans.store_redis:RedisPlanStore",
        "rediss+cluster": "extapi_kit.plans.store_redis:RedisPlanStore",
        "redis+sentinel": "extapi_kit.plans.store_redis:RedisPlanStore",
        "rediss+sentinel": "extapi_kit.plans.store_redis:RedisPlanStore",
        "postgresql": "extapi_kit.plans.store_postgres:PostgresPlanStore",
        "postgres": "extapi_kit.plans.store_postgres:PostgresPlanStore",
    },
    # Key analytics (issue 20 §4): one activity document per key.
    "activity": {
        "memory": "extapi_kit.analytics.store_memory:MemoryActivityStore",
        "sqlite": "extapi_kit.analytics.store_sqlite:SQLiteActivityStore",
        "redis": "extapi_kit.analytics.store_redis:RedisActivityStore",
        "rediss": "extapi_kit.analytics.store_redis:RedisActivityStore",
        "redis+cluster": "extapi_kit.analytics.store_redis:RedisActivityStore",
        "rediss+cluster": "extapi_kit.analytics.store_redis:RedisActivityStore",
        "redis+sentinel": "extapi_kit.analytics.store_redis:RedisActivityStore",
        "rediss+sentinel": "extapi_kit.analytics.store_redis:RedisActivityStore",
        "postgresql": "extapi_kit.analytics.store_postgres:PostgresActivityStore",
        "postgres": "extapi_kit.analytics.store_postgres:PostgresActivityStore",
    },
    "webhooks": {
        "memory": "extapi_kit.webhooks.store_memory:MemoryWebhookStore",
        "sqlite": "extapi_kit.webhooks.store_sqlite:SQLiteWebhookStore",
        "redis": "extapi_kit.webhooks.store_redis:RedisWebhookStore",
        "rediss": "extapi_kit.webhooks.store_redis:RedisWebhookStore",
        "redis+cluster": "extapi_kit.webhooks.store_redis:RedisWebhookStore",
        "rediss+cluster": "extapi_kit.webhooks.store_redis:RedisWebhookStore",
        "redis+sentinel": "extapi_kit.webhooks.store_redis:RedisWebhookStore",
        "rediss+sentinel": "extapi_kit.webhooks.store_redis:RedisWebhookStore",
        "postgresql": "extapi_kit.webhooks.store_postgres:PostgresWebhookStore",
        "postgres": "extapi_kit.webhooks.store_postgres:PostgresWebhookStore",
    },
}


def register_store(kind: str, scheme: str, factory: str | Callable[..., Any]) -> None:
    """Register a store implementation for a URL scheme.

    Args:
        kind: the store kind (``"keys"``, ``"audit"``, ``"idempotency"``, ``"webhooks"``, ...).
        scheme: the URL scheme (``"postgres"``).
        factory: a callable ``factory(url, **options)`` or a ``"module:attribute"`` path to one.
            Classes registered here are called as ``cls.from_url(url, **options)`` when they have
            that classmethod.
    """
    _REGISTRY.setdefault(kind, {})[scheme.lower()] = factory


def registered_schemes(kind: str) -> list[str]:
    """Return the URL schemes registered for a kind of store, sorted.

    Args:
        kind: the store kind.
    """
    return sorted(_REGISTRY.get(kind, {}))


def store_from_url(kind: str, url: str, **options: Any) -> Any:
    """Create a store of the given kind from a URL.

    Args:
        kind: the store kind (``"keys"``, ``"audit"``, ...).
        url: ``memory://``, ``sqlite:///path/to/file.db``, ``redis://host:port/db`` ...
        **options: passed to the store's constructor.

    Raises:
        ConfigurationError: for an unknown kind or scheme; the message names the registered ones.
    """
    schemes = _REGISTRY.get(kind)
    if schemes is None:
        raise ConfigurationError(
            f"unknown store kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}"
        )
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"invalid {kind} store URL {url!r}; expected one of: "
            + ", ".join(f"{s}://" for s in sorted(schemes))
        )
    scheme = urlsplit(url).scheme.lower()
    factory = schemes.get(scheme)
    if factory is None:
        raise ConfigurationError(
            f"no {kind} store for scheme {scheme!r}; registered schemes: "
            + ", ".join(f"{s}://" for s in sorted(schemes))
        )
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    from_url = getattr(factory, "from_url", None)
    if callable(from_url):
        return from_url(url, **options)
    return factory(url, **options)
