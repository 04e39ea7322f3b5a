"""The idempotency store protocol and the records it holds.

A record is addressed by an opaque *record key* (a SHA-256 hex digest of the scope and the
client's Idempotency-Key, see :mod:`extapi_kit.idempotency.fingerprint`), so a store never sees
the raw key. It is in one of two states:

``in_flight``
    created by :meth:`IdempotencyStore.begin`; owned by a random token; ``expires_at`` is the end
    of the lock lease. Once the lease has ended anyone may take the record over.
``completed``
    the stored response; ``expires_at`` is the end of retention (the TTL).

Every store compares ``expires_at`` with the ``now`` the caller passes (the middleware's injected
clock), so expiry behaves the same on every backend and tests never sleep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "COMPLETED",
    "IN_FLIGHT",
    "BeginResult",
    "IdempotencyRecord",
    "IdempotencyStore",
    "StoredResponse",
    "decode_headers",
    "encode_headers",
]

IN_FLIGHT: Literal["in_flight"] = "in_flight"
COMPLETED: Literal["completed"] = "completed"

RawHeaders = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A captured response, replayed verbatim to a retry.

    Args:
        status: the HTTP status code.
        headers: raw response headers (lower-case names), already filtered for replay.
        body: the complete body; empty when ``truncated``.
        truncated: True when the body was larger than the capture cap and was not kept.
    """

    status: int
    headers: RawHeaders
    body: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One stored idempotency record.

    Args:
        state: ``"in_flight"`` or ``"completed"``.
        fingerprint: the SHA-256 fingerprint of the first request.
        token: the owner token of the in-flight lock.
        created_at: when the record was created (epoch seconds).
        expires_at: lease end (in flight) or retention end (completed), epoch seconds.
        response: the stored response (completed records only).
    """

    state: Literal["in_flight", "completed"]
    fingerprint: str
    token: str
    created_at: float
    expires_at: float
    response: StoredResponse | None = None

    def expired(self, now: float) -> bool:
        """Return whether the lease or retention period has ended.

        Args:
            now: the current time in epoch seconds.
        """
        return self.expires_at <= now


@dataclass(frozen=True, slots=True)
class BeginResult:
    """What :meth:`IdempotencyStore.begin` decided.

    Args:
        acquired: True when the caller now owns a fresh in-flight record.
        token: the owner token (when acquired), needed to complete or release.
        existing: the live record that blocked the caller (when not acquired).
    """

    acquired: bool
    token: str | None = None
    existing: IdempotencyRecord | None = None


@runtime_checkable
class IdempotencyStore(Protocol):
    """Storage for idempotency records; implement it to plug in any backend.

    Every method is atomic with respect to other callers of the same store, including other
    processes sharing the backend.
    """

    @classmethod
    def from_url(cls, url: str, **options: Any) -> IdempotencyStore:
        """Create the store from a URL.

        Args:
            url: the store URL.
            **options: backend options.
        """
        ...

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        """Create an in-flight record unless a live one exists (expired ones are replaced).

        Args:
            key: the record key (a hex digest, never a raw Idempotency-Key).
            fingerprint: the request fingerprint.
            now: the current time.
            lease: seconds the in-flight lock lasts.
        """
        ...

    async def complete(
        self, key: str, token: str, response: StoredResponse, *, now: float, ttl: float
    ) -> bool:
        """Store the response if ``token`` still owns the in-flight record; return whether it did.

        Args:
            key: the record key.
            token: the owner token returned by ``begin``.
            response: the response to store.
            now: the current time.
            ttl: seconds to retain the completed record.
        """
        ...

    async def release(self, key: str, token: str) -> bool:
        """Delete the in-flight record if ``token`` owns it; return whether it did.

        Args:
            key: the record key.
            token: the owner token returned by ``begin``.
        """
        ...

    async def get(self, key: str) -> IdempotencyRecord | None:
        """Return the record, expired or not, or None.

        Args:
            key: the record key.
        """
        ...

    async def prune(self, *, now: float | None = None) -> int:
        """Delete expired completed records and abandoned locks; return how many.

        A record whose lock lease is still running is never deleted, however old (case I5).

        Args:
            now: the current time (default: the store's clock).
        """
        ...

    async def ping(self) -> bool:
        """Return whether the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...


def encode_headers(headers: RawHeaders) -> str:
    """Serialise raw headers to JSON text (latin-1 round trip, as HTTP header bytes are).

    Args:
        headers: raw header pairs.
    """
    return json.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers])


def decode_headers(text: str | bytes) -> RawHeaders:
    """Inverse of :func:`encode_headers`.

    Args:
        text: the JSON text.
    """
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in json.loads(text))
