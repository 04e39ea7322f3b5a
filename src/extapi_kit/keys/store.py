"""The :class:`KeyStore` protocol, and helpers shared by the built-in key stores.

A key store keeps :class:`~extapi_kit.keys.models.KeyRecord` objects by id. It never sees a secret;
it stores hashes. Built-ins: ``memory://`` (one process), ``sqlite:///file.db`` (one host; other
processes see changes within the positive-cache TTL) and ``redis://`` (any number of processes;
changes are announced on a pub/sub channel so other processes drop cached entries within 1 s).

Implement this protocol over your own database and pass the instance wherever a store URL is
accepted. ``watch()`` is optional: without it, other processes notice revocations when their
positive-cache entries expire.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.models import KEY_STATUSES, KeyRecord

__all__ = ["InvalidationCallback", "KeyStore", "decode_cursor", "encode_cursor", "filter_records"]

InvalidationCallback = Callable[[str], None]
"""Called with a key id whose cached state must be dropped, or ``"*"`` for all of them."""

MAX_PAGE = 1000


@runtime_checkable
class KeyStore(Protocol):
    """Async storage for API key records."""

    async def create(self, record: KeyRecord) -> None:
        """Insert a new record; raise ConflictError if the id exists.

        Args:
            record: the record.
        """

    async def get(self, key_id: str) -> KeyRecord | None:
        """Return the record with this id, or None.

        Args:
            key_id: the key id.
        """

    async def list(
        self,
        *,
        owner: str | None = None,
        env: str | None = None,
        status: str | None = None,
        now: float = 0.0,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], str | None]:
        """Return one page of records ordered by id, and the cursor of the next page (or None).

        Args:
            owner: only keys of this owner.
            env: only keys of this environment.
            status: only keys with this status at ``now``.
            now: the time used for ``status``.
            cursor: from a previous page.
            limit: page size (1-1000).
        """

    async def update(self, record: KeyRecord) -> None:
        """Replace a record (everything except ``last_used_at``) and announce the change.

        Args:
            record: the new state; NotFoundError if its id does not exist.
        """

    async def touch(self, key_id: str, when: float) -> None:
        """Move ``last_used_at`` forward to ``when`` (never backward).

        Args:
            key_id: the key id.
            when: epoch seconds.
        """

    async def ping(self) -> bool:
        """Return whether the backend answers."""

    async def aclose(self) -> None:
        """Release connections and background tasks."""


def check_page_args(status: str | None, limit: int) -> int:
    """Validate list arguments and return the limit to use.

    Args:
        status: a status filter.
        limit: the requested page size.
    """
    if status is not None and status not in KEY_STATUSES:
        raise ConfigurationError(f"unknown status {status!r}; use one of {', '.join(KEY_STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ConfigurationError(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def encode_cursor(key_id: str) -> str:
    """Return an opaque cursor pointing after ``key_id``.

    Args:
        key_id: the last id of a page.
    """
    return base64.urlsafe_b64encode(key_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str:
    """Return the id a cursor points after ("" for the first page).

    Args:
        cursor: an opaque cursor or None.
    """
    if not cursor:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError("invalid cursor") from None


def filter_records(
    records: Iterable[KeyRecord],
    *,
    owner: str | None,
    env: str | None,
    status: str | None,
    now: float,
) -> list[KeyRecord]:
    """Return the records that pass the list filters.

    Args:
        records: candidates.
        owner: owner filter.
        env: env filter.
        status: status filter at ``now``.
        now: epoch seconds.
    """
    return [
        r
        for r in records
        if (owner is None or r.owner == owner)
        and (env is None or r.env == env)
        and (status is None or r.status(now) == status)
    ]


class Watchers:
    """In-process invalidation callbacks (what ``watch()`` registers)."""

    def __init__(self) -> None:
        self._callbacks: list[InvalidationCallback] = []

    def add(self, callback: InvalidationCallback) -> None:
        """Register a callback.

        Args:
            callback: called with a key id or ``"*"``.
        """
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def notify(self, key_id: str) -> None:
        """Call every callback.

        Args:
            key_id: the changed key id, or ``"*"``.
        """
        for cb in list(self._callbacks):
            cb(key_id)
