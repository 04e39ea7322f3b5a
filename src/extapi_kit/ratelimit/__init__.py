"""Rate limiting: policies, the constant-cost in-process storage and the Redis backend.

The middleware lives in :mod:`extapi_kit.middleware.rate_limit`. Importing this package registers
:class:`FlatMemoryStorage` with ``limits`` under the ``extapi-memory://`` scheme, so
``limits.storage.storage_from_string("extapi-memory://")`` works too.
"""

from __future__ import annotations

from extapi_kit.ratelimit._result import HitResult
from extapi_kit.ratelimit.fallback import FailoverBackend
from extapi_kit.ratelimit.limits_backend import LimitsBackend
from extapi_kit.ratelimit.memory import FlatMemoryStorage, MemoryBackend
from extapi_kit.ratelimit.policy import RateLimitRule, RatePolicy, Window, parse_policy
from extapi_kit.ratelimit.workers import detect_workers

__all__ = [
    "FailoverBackend",
    "FlatMemoryStorage",
    "HitResult",
    "LimitsBackend",
    "MemoryBackend",
    "RateLimitRule",
    "RatePolicy",
    "Window",
    "detect_workers",
    "parse_policy",
]
