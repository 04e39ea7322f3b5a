"""Admin routes over the usage counters: a key's or an owner's days, month and quotas (issue 9).

The counters kept by :class:`~extapi_kit.usage.UsageTracker` are the source of truth for usage:
every worker adds to the same store, they survive restarts and audit pruning, and quota use is
exact. ``GET /keys/{key_id}/usage`` and ``GET /owners/{owner}/usage`` read them; the per-minute view
derived from the audit trail lives at ``/keys/{key_id}/activity``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from extapi_kit.admin._common import guarded
from extapi_kit.admin.models import (
    QuotaStatus,
    UsageCounts,
    UsageDay,
    UsageMonth,
    UsageOut,
    UsageQuery,
)
from extapi_kit.exceptions import ExtAPIKitError, NotFoundError, ProblemError, StoreError
from extapi_kit.keys.service import KeyService
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.usage.tracker import UsageTracker

__all__ = ["add_usage_routes", "sum_days"]

logger = logging.getLogger("extapi_kit.admin")


def sum_days(days: Sequence[Mapping[str, Any]]) -> UsageCounts:
    """Return the sum of several days' shaped counters (``UsageTracker.get_usage`` items).

    Args:
        days: the days.
    """
    out = UsageCounts()
    for day in days:
        for name in ("read", "write", "total", "served", "errors"):
            setattr(out, name, getattr(out, name) + day[name])
        for field in ("rejected", "classes"):
            into: dict[str, int] = getattr(out, field)
            for slug, n in day[field].items():
                into[slug] = into.get(slug, 0) + n
    return out


async def _flush(tracker: UsageTracker) -> None:
    # Read-your-writes for counts this process has not flushed yet (other workers lag by about
    # their flush interval). A failing store must not hide what it already holds.
    if not tracker.pending:
        return
    try:
        await tracker.flush()
    except ExtAPIKitError as exc:
        logger.warning("usage flush before an admin read failed: %s", exc)


def _unavailable(exc: StoreError) -> ProblemError:
    # The store's message may name its URL (credentials included), so it goes to the log only.
    logger.warning("usage store read failed: %s", exc)
    return ProblemError(PROBLEMS["service-unavailable"], detail="The usage store is unavailable.")


async def _view(
    tracker: UsageTracker,
    days: int,
    *,
    key_id: str | None,
    owner: str | None,
    quota: Mapping[str, Any] | None,
) -> UsageOut:
    await _flush(tracker)
    try:
        if key_id is not None:
            series = await tracker.get_usage(key_id, days)
            month = await tracker.get_month(key_id)
        else:
            if owner is None:  # an internal invariant, not user input
                raise RuntimeError("a usage view needs a key or an owner")
            series = await tracker.get_owner_usage(owner, days)
            month = await tracker.get_owner_month(owner)
        quotas = await tracker.quota_status(key_id, quota, owner)
    except StoreError as exc:
        raise _unavailable(exc) from None
    return UsageOut(
        key_id=key_id,
        owner=owner,
        since=series[0]["date"],
        until=series[-1]["date"],
        days=[UsageDay.model_validate(d) for d in series],
        totals=sum_days(series),
        month=UsageMonth.model_validate(month),
        quotas=[QuotaStatus.model_validate(q) for q in quotas],
    )


def add_usage_routes(
    api: ExternalAPI, tracker: UsageTracker, keys: KeyService, *, scopes: Sequence[str]
) -> None:
    """Declare ``/keys/{key_id}/usage`` and ``/owners/{owner}/usage`` on the admin registry.

    Args:
        api: the admin registry.
        tracker: the usage tracker (its store holds the counters; its owner quotas are shown).
        keys: the key service (a key must exist; its quota and owner are read from it).
        scopes: scopes every route requires.
    """
    common: dict[str, Any] = {"scopes": scopes, "idempotent": False, "query_model": UsageQuery}

    @api.get(
        "/keys/{key_id}/usage",
        response_model=UsageOut,
        summary="A key's requests per UTC day and month, and its quota use (usage counters)",
        tags=("keys", "usage"),
        **common,
    )
    @guarded
    async def key_usage(req: HandlerRequest) -> UsageOut:
        record = await keys.get(req.path_params["key_id"])
        return await _view(
            tracker, req.query.days, key_id=record.id, owner=record.owner, quota=record.quota
        )

    @api.get(
        "/owners/{owner}/usage",
        response_model=UsageOut,
        summary="An owner's requests (all its keys) per UTC day and month, and its quota use",
        tags=("usage",),
        **common,
    )
    @guarded
    async def owner_usage(req: HandlerRequest) -> UsageOut:
        owner = req.path_params["owner"]
        page, _ = await keys.list(owner=owner, limit=1)
        if not page:
            raise NotFoundError(f"no key has owner {owner!r}")
        return await _view(tracker, req.query.days, key_id=None, owner=owner, quota=None)
