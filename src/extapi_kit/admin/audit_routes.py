"""Admin routes over the audit trail: the query, and a per-key activity view derived from it.

Usage by day and month comes from the usage counters (:mod:`extapi_kit.admin.usage_routes`);
this view answers a finer question, "what did this key do in the last hour?": every call the stack
audited, bucketed per minute, with rejections (any problem the stack answered with) and
rate-limit refusals (``quota-exceeded``) counted apart. The last record's rate-limit decision
(limit, remaining, reset) is the closest thing to "current rate-limit state" the trail holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.admin._common import epoch, guarded
from extapi_kit.admin.models import (
    ActivityBucket,
    ActivityOut,
    ActivityQuery,
    AuditQuery,
    AuditRecordOut,
)
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import AuditSink
from extapi_kit.keys.service import KeyService
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.pagination import Page

__all__ = ["MAX_ACTIVITY_RECORDS", "AuditAccess", "activity_buckets", "add_audit_routes"]

# Records read at most for one activity view; beyond it the answer says ``truncated``.
MAX_ACTIVITY_RECORDS = 50_000
_PAGE = 5_000


class AuditAccess:
    """The audit sink the admin API reads, and an optional flush run before each read.

    Args:
        sink: the queryable sink.
        flush: coroutine function delivering queued records first (read-your-writes for the
            console); :func:`~extapi_kit.admin.admin_app` sets it to its audit layer's flush.
    """

    def __init__(self, sink: AuditSink, flush: Callable[[], Awaitable[None]] | None = None) -> None:
        self.sink = sink
        self.flush = flush

    async def ready(self) -> None:
        """Deliver queued records (when a flush is configured) so a read sees them."""
        if self.flush is not None:
            await self.flush()

    async def query(self, **filters: Any) -> tuple[list[AuditRecord], str | None]:
        """Flush if configured, then query the sink.

        Args:
            **filters: :meth:`AuditSink.query` keyword arguments.
        """
        await self.ready()
        return await self.sink.query(**filters)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def activity_buckets(
    records: Sequence[AuditRecord], *, start: float, minutes: int
) -> list[ActivityBucket]:
    """Count records per minute from ``start`` (oldest bucket first).

    Args:
        records: the key's records in the window.
        start: epoch seconds of the first bucket (aligned to a minute).
        minutes: number of buckets.
    """
    buckets = [ActivityBucket(start=_iso(start + 60 * i)) for i in range(minutes)]
    for rec in records:
        i = int((rec.timestamp_us / 1_000_000 - start) // 60)
        if not 0 <= i < minutes:
            continue
        b = buckets[i]
        b.requests += 1
        if rec.rejection is not None:
            b.rejections += 1
        if rec.rejection == "quota-exceeded" or rec.status == 429:
            b.rate_limited += 1
        if rec.error or rec.status >= 500:
            b.errors += 1
    return buckets


def add_audit_routes(
    api: ExternalAPI,
    audit: AuditAccess,
    keys: KeyService,
    *,
    scopes: Sequence[str],
    clock: Clock,
) -> None:
    """Declare ``/audit`` and ``/keys/{key_id}/activity`` on the admin registry.

    Args:
        api: the admin registry.
        audit: the sink access.
        keys: the key service (activity checks the key exists and shows its limits).
        scopes: scopes every route requires.
        clock: returns epoch seconds (the activity window ends now).
    """
    common: dict[str, Any] = {"scopes": scopes, "idempotent": False}

    @api.get(
        "/audit",
        query_model=AuditQuery,
        response_model=Page[AuditRecordOut],
        summary="Query the audit trail, newest first",
        tags=("audit",),
        **common,
    )
    @guarded
    async def query_audit(req: HandlerRequest) -> Page[AuditRecordOut]:
        q: AuditQuery = req.query
        records, cursor = await audit.query(
            key_id=q.key_id,
            route=q.route,
            method=q.method,
            status=q.status,
            since=epoch(q.since),
            until=epoch(q.until),
            limit=q.limit,
            cursor=q.cursor,
        )
        data = [AuditRecordOut.model_validate(r.to_dict(iso=True)) for r in records]
        return Page[AuditRecordOut](data=data, next_cursor=cursor, has_more=cursor is not None)

    @api.get(
        "/keys/{key_id}/activity",
        query_model=ActivityQuery,
        response_model=ActivityOut,
        summary="Requests and rejections per minute (derived from the audit trail)",
        tags=("keys",),
        **common,
    )
    @guarded
    async def key_activity(req: HandlerRequest) -> ActivityOut:
        key_id = req.path_params["key_id"]
        record = await keys.get(key_id)
        minutes: int = req.query.minutes
        now = clock()
        start = (now // 60 + 1) * 60 - minutes * 60  # the last bucket holds "now"
        rows: list[AuditRecord] = []
        cursor: str | None = None
        truncated = False
        await audit.ready()
        while True:
            page, cursor = await audit.sink.query(
                key_id=key_id, since=start, until=now + 1, limit=_PAGE, cursor=cursor
            )
            rows.extend(page)
            if cursor is None:
                break
            if len(rows) >= MAX_ACTIVITY_RECORDS:
                truncated = True
                break
        buckets = activity_buckets(rows, start=start, minutes=minutes)
        last = next((r.rate_limit for r in rows if r.rate_limit), None)  # rows: newest first
        return ActivityOut(
            key_id=key_id,
            since=_iso(start),
            until=_iso(now),
            buckets=buckets,
            requests=sum(b.requests for b in buckets),
            rejections=sum(b.rejections for b in buckets),
            rate_limited=sum(b.rate_limited for b in buckets),
            truncated=truncated,
            rate_limits=dict(record.rate_limits),
            last_rate_limit=last,
        )
