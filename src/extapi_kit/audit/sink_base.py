"""The audit sink protocol and the query filter every queryable sink shares."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from extapi_kit.audit.record import AuditRecord, to_epoch_us
from extapi_kit.exceptions import ConfigurationError, InvalidCursorError

__all__ = [
    "DEFAULT_QUERY_LIMIT",
    "AuditFilter",
    "AuditSink",
    "QueryableSink",
    "TimeArg",
    "cutoff_us",
    "invalid_cursor",
    "split_cursor",
    "split_stream_id",
]

DEFAULT_QUERY_LIMIT = 100
MAX_QUERY_LIMIT = 10_000

TimeArg = datetime | float | int | None


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go. Built-ins: memory, SQLite, Redis Streams, logging, hook.

    ``write_batch`` must be all-or-nothing where the backend allows it: a batch that raised is
    spilled and re-sent whole, and sinks de-duplicate by :attr:`AuditRecord.id` where they can.
    """

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Store a batch of records; raise StoreError (or any error) when the backend fails.

        Args:
            records: the records, oldest first.
        """
        ...

    async def query(
        self,
        *,
        key_id: str | None = None,
        route: str | None = None,
        method: str | None = None,
        status: int | None = None,
        since: TimeArg = None,
        until: TimeArg = None,
        limit: int = DEFAULT_QUERY_LIMIT,
        cursor: str | None = None,
    ) -> tuple[list[AuditRecord], str | None]:
        """Return matching records newest first, and a cursor for the next page (or None).

        Args:
            key_id: only this key's calls.
            route: only this route (template, or path when no registry matched).
            method: only this HTTP method.
            status: only this status code.
            since: arrival at or after this time (datetime, naive = UTC, or epoch seconds).
            until: arrival strictly before this time.
            limit: page size.
            cursor: the cursor returned with the previous page.
        """
        ...

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Delete records that arrived before a time; return how many were deleted.

        Args:
            older_than: a datetime, an age (timedelta or seconds) measured from now.
        """
        ...

    async def ping(self) -> bool:
        """Return True when the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """A parsed query: the filters, as epoch microseconds for the time range.

    Args:
        key_id: key id to match.
        route: route to match.
        method: method to match (upper-case).
        status: status to match.
        since_us: inclusive lower bound.
        until_us: exclusive upper bound.
        limit: page size (1..10,000).
    """

    key_id: str | None = None
    route: str | None = None
    method: str | None = None
    status: int | None = None
    since_us: int | None = None
    until_us: int | None = None
    limit: int = DEFAULT_QUERY_LIMIT

    @classmethod
    def build(
        cls,
        *,
        key_id: str | None = None,
        route: str | None = None,
        method: str | None = None,
        status: int | None = None,
        since: TimeArg = None,
        until: TimeArg = None,
        limit: int = DEFAULT_QUERY_LIMIT,
    ) -> AuditFilter:
        """Validate query arguments.

        Args:
            key_id: key id to match.
            route: route to match.
            method: HTTP method to match (any case).
            status: status to match.
            since: inclusive lower time bound.
            until: exclusive upper time bound.
            limit: page size.
        """
        if not isinstance(limit, int) or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ConfigurationError(f"limit must be between 1 and {MAX_QUERY_LIMIT}: {limit!r}")
        return cls(
            key_id=key_id,
            route=route,
            method=method.upper() if method else None,
            status=status,
            since_us=to_epoch_us(since),
            until_us=to_epoch_us(until),
            limit=limit,
        )

    def matches(self, rec: AuditRecord) -> bool:
        """Return whether a record passes every filter.

        Args:
            rec: the record.
        """
        return (
            (self.key_id is None or rec.key_id == self.key_id)
            and (self.route is None or rec.route == self.route)
            and (self.method is None or rec.method == self.method)
            and (self.status is None or rec.status == self.status)
            and (self.since_us is None or rec.timestamp_us >= self.since_us)
            and (self.until_us is None or rec.timestamp_us < self.until_us)
        )


def cutoff_us(older_than: datetime | timedelta | float, now: float) -> int:
    """Return the prune cut-off in epoch microseconds.

    Args:
        older_than: an absolute datetime, or an age (timedelta or seconds) before ``now``.
        now: the current epoch time in seconds.
    """
    if isinstance(older_than, datetime):
        return to_epoch_us(older_than) or 0
    seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
    if seconds < 0:
        raise ConfigurationError(f"older_than must not be negative: {older_than!r}")
    return round((now - float(seconds)) * 1_000_000)


# Cursors are checked before any backend sees them: a malformed one is the same
# InvalidCursorError (400 over HTTP) on every sink, never a backend error (issue 15, M9).
_LOCAL_CURSOR_RE = re.compile(r"(-?[0-9]{1,19})\.([0-9]{1,19})", re.ASCII)
_STREAM_ID_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})", re.ASCII)
_INT64 = 1 << 63
_UINT64 = 1 << 64


def invalid_cursor(cursor: str) -> InvalidCursorError:
    """Return the error for a cursor that no sink of this kind produced.

    Args:
        cursor: the cursor as given (shown abbreviated, escaped by repr).
    """
    shown = cursor if len(cursor) <= 40 else cursor[:40] + "..."
    return InvalidCursorError(f"invalid audit cursor: {shown!r}")


def split_cursor(cursor: str | None) -> tuple[int, int] | None:
    """Decode a ``"<ts_us>.<seq>"`` cursor used by the memory and SQLite sinks.

    Args:
        cursor: the cursor, or None.

    Raises:
        InvalidCursorError: not such a cursor, or outside SQLite's 64-bit integers.
    """
    if cursor is None:
        return None
    match = _LOCAL_CURSOR_RE.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise invalid_cursor(str(cursor))
    ts, seq = int(match[1]), int(match[2])
    if not -_INT64 <= ts < _INT64 or seq >= _INT64:
        raise invalid_cursor(cursor)
    return ts, seq


def split_stream_id(cursor: str | None) -> tuple[int, int] | None:
    """Decode a Redis stream id cursor (``"<ms>-<seq>"``, both unsigned 64-bit).

    Args:
        cursor: the cursor, or None.

    Raises:
        InvalidCursorError: not a stream id.
    """
    if cursor is None:
        return None
    match = _STREAM_ID_RE.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise invalid_cursor(str(cursor))
    ms, seq = int(match[1]), int(match[2])
    if ms >= _UINT64 or seq >= _UINT64:
        raise invalid_cursor(cursor)
    return ms, seq


class QueryableSink:
    """Base of the queryable built-in sinks: turns ``query`` arguments into one AuditFilter.

    Subclasses implement ``_query(flt, cursor)``.
    """

    async def query(
        self,
        *,
        key_id: str | None = None,
        route: str | None = None,
        method: str | None = None,
        status: int | None = None,
        since: TimeArg = None,
        until: TimeArg = None,
        limit: int = DEFAULT_QUERY_LIMIT,
        cursor: str | None = None,
    ) -> tuple[list[AuditRecord], str | None]:
        """Return matching records newest first and the next cursor (see AuditSink.query).

        Args:
            key_id: only this key's calls.
            route: only this route.
            method: only this method.
            status: only this status.
            since: inclusive lower time bound.
            until: exclusive upper time bound.
            limit: page size.
            cursor: the previous page's cursor.
        """
        flt = AuditFilter.build(
            key_id=key_id,
            route=route,
            method=method,
            status=status,
            since=since,
            until=until,
            limit=limit,
        )
        # An empty cursor is no cursor (the first page), as for list routes.
        return await self._query(flt, cursor or None)

    async def _query(
        self, flt: AuditFilter, cursor: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        raise NotImplementedError
