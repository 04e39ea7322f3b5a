"""``memory://``: key records in a dict, for tests and single-process apps.

Records live only as long as the process; every worker process of a server would have its own
keys, so use SQLite or Redis for anything that runs more than one process.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

from extapi_kit.exceptions import ConflictError, NotFoundError
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import (
    InvalidationCallback,
    Watchers,
    check_page_args,
    decode_cursor,
    encode_cursor,
    filter_records,
)

__all__ = ["MemoryKeyStore"]


class MemoryKeyStore:
    """An in-process :class:`~extapi_kit.keys.store.KeyStore`.

    Args:
        **options: accepted and ignored, so ``memory://`` works wherever a URL does.
    """

    def __init__(self, **options: Any) -> None:
        self._records: dict[str, KeyRecord] = {}
        self._ids: list[str] = []
        self._watchers = Watchers()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryKeyStore:
        """Create a store from ``memory://``.

        Args:
            url: ``memory://``.
            **options: ignored.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryKeyStore({len(self._records)} keys)"

    async def create(self, record: KeyRecord) -> None:
        """Insert a record.

        Args:
            record: the record.
        """
        if record.id in self._records:
            raise ConflictError(f"key {record.id} already exists")
        self._records[record.id] = record
        bisect.insort(self._ids, record.id)

    async def get(self, key_id: str) -> KeyRecord | None:
        """Return a record or None.

        Args:
            key_id: the key id.
        """
        return self._records.get(key_id)

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
        """Return one page of records ordered by id.

        Args:
            owner: owner filter.
            env: env filter.
            status: status filter.
            now: time for the status filter.
            cursor: from a previous page.
            limit: page size.
        """
        check_page_args(status, limit)
        after = decode_cursor(cursor)
        start = bisect.bisect_right(self._ids, after) if after else 0
        candidates = (self._records[i] for i in self._ids[start:])
        matched = filter_records(candidates, owner=owner, env=env, status=status, now=now)
        page = matched[:limit]
        more = len(matched) > limit
        return page, (encode_cursor(page[-1].id) if more and page else None)

    async def update(self, record: KeyRecord) -> None:
        """Replace a record (keeping its ``last_used_at``) and notify watchers.

        Args:
            record: the new state.
        """
        current = self._records.get(record.id)
        if current is None:
            raise NotFoundError(f"no key {record.id}")
        self._records[record.id] = dataclasses.replace(record, last_used_at=current.last_used_at)
        self._watchers.notify(record.id)

    async def touch(self, key_id: str, when: float) -> None:
        """Move ``last_used_at`` forward.

        Args:
            key_id: the key id.
            when: epoch seconds.
        """
        current = self._records.get(key_id)
        if current is not None and (current.last_used_at or 0) < when:
            self._records[key_id] = dataclasses.replace(current, last_used_at=when)

    async def watch(self, callback: InvalidationCallback) -> None:
        """Call ``callback(key_id)`` after every update through this store object.

        Args:
            callback: the invalidation callback.
        """
        self._watchers.add(callback)

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
