"""The audit trail: records, sinks (memory, SQLite, Redis Streams, logging, hook) and the writer.

:class:`~extapi_kit.middleware.audit.AuditMiddleware` builds one :class:`AuditRecord` per call;
the background :class:`AuditWriter` delivers them to every configured :class:`AuditSink`. Sinks
are created from URLs through the store registry (kind ``"audit"``).
"""

from __future__ import annotations

from extapi_kit.audit.record import DEFAULT_REDACTED_QUERY, AuditRecord, QueryRedactor
from extapi_kit.audit.sink_base import AuditFilter, AuditSink
from extapi_kit.audit.sink_logging import AUDIT_LOGGER, AuditHook, HookSink, LoggingSink
from extapi_kit.audit.sink_memory import MemorySink
from extapi_kit.audit.sink_redis import RedisSink
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.audit.writer import AuditWriter

__all__ = [
    "AUDIT_LOGGER",
    "DEFAULT_REDACTED_QUERY",
    "AuditFilter",
    "AuditHook",
    "AuditRecord",
    "AuditSink",
    "AuditWriter",
    "HookSink",
    "LoggingSink",
    "MemorySink",
    "QueryRedactor",
    "RedisSink",
    "SQLiteSink",
    "audit_store_from_url",
]


def audit_store_from_url(url: str, **options: object) -> AuditSink:
    """Create an audit sink from a URL (``memory://``, ``sqlite:///audit.db``, ``redis://...``).

    Args:
        url: the store URL.
        **options: passed to the sink's constructor (``busy_timeout``, ``stream``, ``maxlen``...).
    """
    from extapi_kit.stores import store_from_url

    sink: AuditSink = store_from_url("audit", url, **options)
    return sink
