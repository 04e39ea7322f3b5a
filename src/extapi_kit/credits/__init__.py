"""Credits: non-refilling balances that each request spends (issue 20 §2).

A key or an owner carries a balance; every admitted request spends its route's ``cost``; an
empty balance answers ``402 credits-exhausted``; operators top up through the admin API or
``extapi-kit credits``; ``credits.low``/``credits.exhausted`` fire once per crossing. A key
created with ``uses=N`` (:meth:`CreditLedger.create_key`) is the N-use key. See docs/credits.md.
"""

from __future__ import annotations

from extapi_kit.credits.ledger import CreditDecision, CreditLedger
from extapi_kit.credits.middleware import CreditsMiddleware
from extapi_kit.credits.models import EVENT_EXHAUSTED, EVENT_LOW, CreditEntry, Spend
from extapi_kit.credits.store import CreditStore

__all__ = [
    "EVENT_EXHAUSTED",
    "EVENT_LOW",
    "CreditDecision",
    "CreditEntry",
    "CreditLedger",
    "CreditStore",
    "CreditsMiddleware",
    "Spend",
]
