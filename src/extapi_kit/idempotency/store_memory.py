"""In-process idempotency store: a dict, atomic because the event loop runs one task at a time.

Records live in one process only: with several workers (``uvicorn --workers N``) each has its own
dict and a retry landing on another worker executes again. Use SQLite (one host) or Redis.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.idempotency._base import (
    COMPLETED,
    IN_FLIGHT,
    BeginResult,
    IdempotencyRecord,
    StoredResponse,
)

__all__ = ["MemoryIdempotencyStore"]

# Sweep expired records at most this often (seconds of the store clock), on the write path.
_SWEEP_INTERVAL = 60.0


class MemoryIdempotencyStore:
    """Idempotency records in a dict (single process; tests and development).

    Args:
        clock: returns epoch seconds; used by ``prune()`` without ``now`` and for sweeping.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or time.time
        self._records: dict[str, IdempotencyRecord] = {}
        self._next_sweep = 0.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryIdempotencyStore:
        """Create the store from ``memory://``.

        Args:
            url: ``memory://`` (anything after the scheme is ignored).
            **options: ``clock``.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryIdempotencyStore({len(self._records)} records)"

    def __len__(self) -> int:
        return len(self._records)

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        """Create an in-flight record unless a live one exists.

        Args:
            key: the record key.
            fingerprint: the request fingerprint.
            now: the current time.
            lease: lock lease in seconds.
        """
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_INTERVAL
            self._sweep(now)
        existing = self._records.get(key)
        if existing is not None and not existing.expired(now):
            return BeginResult(acquired=False, existing=existing)
        token = secrets.token_hex(16)
        self._records[key] = IdempotencyRecord(
            state=IN_FLIGHT,
            fingerprint=fingerprint,
            token=token,
            created_at=now,
            expires_at=now + lease,
        )
        return BeginResult(acquired=True, token=token)

    async def complete(
        self, key: str, token: str, response: StoredResponse, *, now: float, ttl: float
    ) -> bool:
        """Store the response if ``token`` owns the in-flight record.

        Args:
            key: the record key.
            token: the owner token.
            response: the response to keep.
            now: the current time.
            ttl: retention in seconds.
        """
        rec = self._records.get(key)
        if rec is None or rec.state != IN_FLIGHT or rec.token != token:
            return False
        self._records[key] = IdempotencyRecord(
            state=COMPLETED,
            fingerprint=rec.fingerprint,
            token=token,
            created_at=rec.created_at,
            expires_at=now + ttl,
            response=response,
        )
        return True

    async def release(self, key: str, token: str) -> bool:
        """Delete the in-flight record if ``token`` owns it.

        Args:
            key: the record key.
            token: the owner token.
        """
        rec = self._records.get(key)
        if rec is None or rec.state != IN_FLIGHT or rec.token != token:
            return False
        del self._records[key]
        return True

    async def get(self, key: str) -> IdempotencyRecord | None:
        """Return the record or None.

        Args:
            key: the record key.
        """
        return self._records.get(key)

    async def prune(self, *, now: float | None = None) -> int:
        """Delete expired records (never a record whose lease is still running).

        Args:
            now: the current time (default: the store clock).
        """
        return self._sweep(self._clock() if now is None else now)

    def _sweep(self, now: float) -> int:
        dead = [k for k, rec in self._records.items() if rec.expired(now)]
        for k in dead:
            del self._records[k]
        return len(dead)

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Drop every record."""
        self._records.clear()
