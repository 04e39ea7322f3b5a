"""The :class:`ActivityStore` protocol: one versioned document per key, written compare-and-set.

A flush reads a key's document, merges its batch in Python (:func:`~extapi_kit.analytics.model.
merge`, the same code for every backend) and writes it back only if nobody wrote in between
(the version it read is still the stored one); a lost race reads again and re-merges. So every
backend stays a few lines of storage, several processes never lose each other's counts, and the
process whose write added an address is the one that announces it (``api_key.new_ip`` once).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ActivityStore"]


@runtime_checkable
class ActivityStore(Protocol):
    """Where per-key activity documents live (memory, SQLite, Redis, PostgreSQL)."""

    async def load(self, key_id: str) -> tuple[int, str | None]:
        """Return ``(version, document JSON)``; ``(0, None)`` when the key has none.

        Args:
            key_id: the key id.
        """
        ...

    async def save(self, key_id: str, version: int, doc: str, *, ttl: int) -> bool:
        """Store ``doc`` if the stored version is still ``version`` (0: none yet); True if written.

        Args:
            key_id: the key id.
            version: the version :meth:`load` returned.
            doc: the new document (JSON).
            ttl: seconds the document is kept after this write when never written again.
        """
        ...

    async def prune(self, before: float) -> int:
        """Delete documents last written before ``before`` (epoch seconds); return how many.

        Args:
            before: epoch seconds.
        """
        ...

    async def ping(self) -> bool:
        """Return True when the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...
