"""Key analytics (issue 20 §4): per key, the client addresses, user agents, status classes and
refusals of the last 30 days, derived from the audit trail off the request path.

:class:`KeyActivity` is the audit sink that aggregates them; its stores are the ``"activity"``
kind of :func:`~extapi_kit.stores.store_from_url` (``memory://``, ``sqlite:///``, ``redis://``
and its cluster and sentinel forms, ``postgresql://``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extapi_kit.analytics.model import (
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_IPS,
    DEFAULT_WINDOW_DAYS,
    REFUSAL_REASONS,
    note_refusal,
    view,
)
from extapi_kit.analytics.store import ActivityStore

if TYPE_CHECKING:
    from extapi_kit.analytics.recorder import EVENT_NEW_IP, NEW_IP_METADATA, KeyActivity

__all__ = [
    "DEFAULT_MAX_AGENTS",
    "DEFAULT_MAX_IPS",
    "DEFAULT_WINDOW_DAYS",
    "EVENT_NEW_IP",
    "NEW_IP_METADATA",
    "REFUSAL_REASONS",
    "ActivityStore",
    "KeyActivity",
    "note_refusal",
    "view",
]


def __getattr__(name: str) -> Any:
    # The recorder imports the audit package; the API-key layer imports only ``note_refusal``.
    if name in ("EVENT_NEW_IP", "NEW_IP_METADATA", "KeyActivity"):
        from extapi_kit.analytics import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
