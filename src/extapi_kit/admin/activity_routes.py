"""Admin route over key analytics: ``GET /keys/{key_id}/analytics`` (issue 20 §4).

The 30-day view kept by :class:`~extapi_kit.analytics.KeyActivity`: client addresses and user
agents with counts and first/last seen, answers by status class, the error rate and the refusals
by reason, plus the key's last use. (``/keys/{key_id}/activity`` is the per-minute view of the
last hour, derived from the audit trail.) An admin key that belongs to an owner reads only the
keys of that owner; another owner's key is a 404, as if it did not exist (case K20).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from extapi_kit._types import Clock
from extapi_kit.admin._common import guarded
from extapi_kit.analytics import KeyActivity
from extapi_kit.analytics.model import iso_utc
from extapi_kit.exceptions import NotFoundError, PermissionDeniedError, ProblemError, StoreError
from extapi_kit.keys.service import KeyService
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest

__all__ = ["KeyAnalyticsOut", "SeenOut", "add_activity_routes"]

logger = logging.getLogger("extapi_kit.admin")


class SeenOut(BaseModel):
    """One client address or user agent of a key.

    Args:
        ip: the address (address rows).
        user_agent: the agent (agent rows).
        count: requests seen in the window.
        first_seen: first request in the window (ISO 8601 UTC).
        last_seen: last request (ISO 8601 UTC).
    """

    ip: str | None = None
    user_agent: str | None = None
    count: int
    first_seen: str
    last_seen: str


class KeyAnalyticsOut(BaseModel):
    """A key's analytics over the window.

    Args:
        key_id: the key.
        owner: its owner.
        last_used_at: the key's last successful use (ISO 8601 UTC), if any.
        window_days: the window.
        since: the first UTC day of the window.
        until: now.
        requests: requests answered in the window (refused ones included).
        status: requests per status class (``2xx`` ...).
        error_rate: share of 4xx and 5xx answers.
        refused: refused requests per reason (``revoked``, ``expired``, ``wrong-network`` ...).
        ips: client addresses, busiest first (at most ``max_ips``).
        user_agents: user agents, busiest first (at most ``max_user_agents``).
        max_ips: the per-key address bound.
        max_user_agents: the per-key agent bound.
    """

    key_id: str
    owner: str | None = None
    last_used_at: str | None = None
    window_days: int
    since: str
    until: str
    requests: int
    status: dict[str, int]
    error_rate: float
    refused: dict[str, int]
    ips: list[SeenOut] = Field(default_factory=list)
    user_agents: list[SeenOut] = Field(default_factory=list)
    max_ips: int
    max_user_agents: int


def add_activity_routes(
    api: ExternalAPI,
    activity: KeyActivity,
    keys: KeyService,
    *,
    scopes: Sequence[str],
    clock: Clock,
) -> None:
    """Declare ``GET /keys/{key_id}/analytics`` on the admin registry.

    Args:
        api: the admin registry.
        activity: the key analytics.
        keys: the key service (the key must exist, and be the caller owner's).
        scopes: scopes the route requires.
        clock: returns epoch seconds (unused; the analytics have their own clock).
    """
    common: dict[str, Any] = {"scopes": scopes, "idempotent": False, "tags": ("keys",)}

    @api.get(
        "/keys/{key_id}/analytics",
        response_model=KeyAnalyticsOut,
        summary="A key's last 30 days: addresses, user agents, error rate, refusals by reason",
        **common,
    )
    @guarded
    async def key_analytics(req: HandlerRequest) -> KeyAnalyticsOut:
        if req.principal is None:
            raise PermissionDeniedError("the admin API needs the calling key")
        key_id = req.path_params["key_id"]
        record = await keys.get(key_id)
        caller_owner = req.principal.owner
        if caller_owner is not None and record.owner != caller_owner:
            # K20: another tenant's key is answered exactly like a key that does not exist.
            raise NotFoundError(f"no API key {key_id!r}")
        try:
            data = await activity.get(record.id)
        except StoreError as exc:
            logger.warning("key activity store read failed: %s", exc)
            raise ProblemError(
                PROBLEMS["service-unavailable"], detail="The key activity store is unavailable."
            ) from None
        last = record.last_used_at
        return KeyAnalyticsOut.model_validate(
            {
                **data,
                "owner": record.owner,
                "last_used_at": iso_utc(last) if last is not None else None,
            }
        )
