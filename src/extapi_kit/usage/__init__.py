"""Usage tracking and quotas per API key and owner (issue 9).

:class:`UsageTracker` counts requests by UTC day and month, split by rate class and outcome, in a
:class:`UsageStore` (``memory://``, ``sqlite:///``, ``redis://``), and enforces optional monthly or
daily quotas; :class:`~extapi_kit.middleware.usage.UsageMiddleware` drives it from the request path.
See docs/usage-and-quotas.md.
"""

from __future__ import annotations

from extapi_kit.usage._periods import QuotaRule, parse_quota
from extapi_kit.usage.quota import EVENT_EXHAUSTED, EVENT_WARNING, QuotaDecision
from extapi_kit.usage.store import QuotaCheck, UsageStore
from extapi_kit.usage.tracker import UsageTracker

__all__ = [
    "EVENT_EXHAUSTED",
    "EVENT_WARNING",
    "QuotaCheck",
    "QuotaDecision",
    "QuotaRule",
    "UsageStore",
    "UsageTracker",
    "parse_quota",
]
