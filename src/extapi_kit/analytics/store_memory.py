"""In-process activity store: a dict of ``key id -> (version, written at, document)``.

For tests and single-process deployments; each worker process keeps its own copy.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["MemoryActivityStore"]


class MemoryActivityStore:
    """An :class:`~extapi_kit.analytics.store.ActivityStore` in process memory."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[int, float, str]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryActivityStore:
        """Create the store from ``memory://``.

        Args:
            url: the URL (ignored beyond its scheme).
            **options: none are accepted.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryActivityStore(keys={len(self._docs)})"

    def __len__(self) -> int:
        return len(self._docs)

    async def load(self, key_id: str) -> tuple[int, str | None]:
        """Return ``(version, document)``.

        Args:
            key_id: the key id.
        """
        row = self._docs.get(key_id)
        return (0, None) if row is None else (row[0], row[2])

    async def save(self, key_id: str, version: int, doc: str, *, ttl: int) -> bool:
        """Compare-and-set the document.

        Args:
            key_id: the key id.
            version: the version read.
            doc: the new document.
            ttl: unused (:meth:`prune` drops idle documents).
        """
        row = self._docs.get(key_id)
        if (0 if row is None else row[0]) != version:
            return False
        self._docs[key_id] = (version + 1, time.time(), doc)
        return True

    async def prune(self, before: float) -> int:
        """Delete documents last written before ``before``.

        Args:
            before: epoch seconds.
        """
        old = [k for k, row in self._docs.items() if row[1] < before]
        for k in old:
            del self._docs[k]
        return len(old)

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
