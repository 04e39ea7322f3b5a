"""Idempotency-Key support: the store protocol, built-in stores, key parsing and fingerprints.

The middleware lives in :mod:`extapi_kit.middleware.idempotency`; see ``docs/idempotency.md``.
Stores are chosen by URL through ``store_from_url("idempotency", url)``.
"""

from __future__ import annotations

from extapi_kit.idempotency._base import (
    BeginResult,
    IdempotencyRecord,
    IdempotencyStore,
    StoredResponse,
)
from extapi_kit.idempotency.fingerprint import (
    parse_idempotency_key,
    record_key,
    request_fingerprint,
)
from extapi_kit.idempotency.store_memory import MemoryIdempotencyStore

__all__ = [
    "BeginResult",
    "IdempotencyRecord",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "StoredResponse",
    "parse_idempotency_key",
    "record_key",
    "request_fingerprint",
]
