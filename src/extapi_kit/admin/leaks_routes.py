"""Admin routes over leak reports (``docs/leaked-keys.md``): list and show, never a token.

A report says which key was found where, by whom, and what was done (``revoked``, ``flagged``
with the end of its grace, or ``none`` for a key that was no longer valid). Acting on a flagged
key uses the key routes: ``POST /keys/{id}/revoke``, ``/rotate``, or ``PATCH`` its expiry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from extapi_kit.admin._common import guarded
from extapi_kit.exceptions import NotFoundError, ProblemError, StoreError
from extapi_kit.keys.leaks import LeakReport, LeakReportStore
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.pagination import Page

__all__ = ["LeakListQuery", "LeakReportOut", "add_leak_routes"]

_TAGS = ("leaks",)


class LeakReportOut(BaseModel):
    """A leak report as operators see it."""

    id: str
    key_id: str
    display_prefix: str
    owner: str | None = None
    url: str = ""
    source: str = ""
    token_type: str = ""
    reporter: str
    action: Literal["revoked", "flagged", "none"]
    reported_at: str | None = None
    grace_ends_at: str | None = None


class LeakListQuery(BaseModel):
    """Query of ``GET /leaks``."""

    model_config = ConfigDict(extra="forbid")

    key_id: str | None = Field(None, max_length=64)
    owner: str | None = Field(None, max_length=200)
    cursor: str | None = Field(None, max_length=500)
    limit: int = Field(50, ge=1, le=200)


def _out(report: LeakReport) -> LeakReportOut:
    return LeakReportOut.model_validate(report.public_dict())


def _unavailable(exc: StoreError) -> ProblemError:
    # The store's message may name its URL; it stays out of the answer.
    del exc
    return ProblemError(PROBLEMS["service-unavailable"], detail="The leak store is unavailable.")


def add_leak_routes(api: ExternalAPI, store: LeakReportStore, *, scopes: Sequence[str]) -> None:
    """Declare ``GET /leaks`` and ``GET /leaks/{report_id}`` on the admin registry.

    Args:
        api: the admin registry.
        store: the leak report store.
        scopes: scopes every route requires.
    """
    common: dict[str, Any] = {"scopes": scopes, "tags": _TAGS}

    @api.get(
        "/leaks",
        query_model=LeakListQuery,
        response_model=Page[LeakReportOut],
        summary="List leak reports, newest first (filter by key or owner)",
        **common,
    )
    @guarded
    async def list_leaks(req: HandlerRequest) -> Page[LeakReportOut]:
        q: LeakListQuery = req.query
        try:
            reports, cursor = await store.list(
                key_id=q.key_id, owner=q.owner, cursor=q.cursor, limit=q.limit
            )
        except StoreError as exc:
            raise _unavailable(exc) from None
        return Page[LeakReportOut](
            data=[_out(r) for r in reports], next_cursor=cursor, has_more=cursor is not None
        )

    @api.get(
        "/leaks/{report_id}", response_model=LeakReportOut, summary="Show a leak report", **common
    )
    @guarded
    async def show_leak(req: HandlerRequest) -> LeakReportOut:
        rid = req.path_params["report_id"]
        try:
            report = await store.get(rid)
        except StoreError as exc:
            raise _unavailable(exc) from None
        if report is None:
            raise NotFoundError("no such leak report")
        return _out(report)
