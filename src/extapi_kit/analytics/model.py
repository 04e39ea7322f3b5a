"""Key analytics: the per-key activity document, how a batch merges into it, and its view.

A key's activity is one small JSON document (``<= 31`` days of counters, ``<= max_ips`` client
addresses and ``<= max_agents`` user agents), so its size is bounded whatever the traffic::

    {"days":   {"2026-12-04": {"2xx": 120, "4xx": 3, "r:revoked": 1}},
     "ips":    {"203.0.113.7": [count, first_seen, last_seen]},
     "agents": {"curl/8.5.0":  [count, first_seen, last_seen]}}

Counter fields are the status class of the answer (``"2xx"``, ``"4xx"``, ...) and ``"r:<reason>"``
for a refused request (:data:`REFUSAL_REASONS`). An address or agent not seen for the window (30
days) is dropped; when a key already tracks its maximum and a new one arrives, the entry with the
lowest count goes, the one seen least recently breaking ties, and the newcomer takes its place:
busy addresses stay, and the newest address is always shown (so is its "new IP" event).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extapi_kit.context import RequestContext

__all__ = [
    "DEFAULT_MAX_AGENTS",
    "DEFAULT_MAX_IPS",
    "DEFAULT_WINDOW_DAYS",
    "REFUSAL_EXTRA",
    "REFUSAL_REASONS",
    "Delta",
    "merge",
    "note_refusal",
    "refusal_reason",
    "view",
]

DEFAULT_WINDOW_DAYS = 30
DEFAULT_MAX_IPS = 50
DEFAULT_MAX_AGENTS = 20
MAX_AGENT_LENGTH = 200
DAY = 86400
#: The ``RequestContext.extra`` (and so audit ``extra``) member naming a refused key and why.
REFUSAL_EXTRA = "auth_refusal"
#: What a refusal is counted as: a verify failure reason or a rejection slug -> reason.
REFUSAL_REASONS: Mapping[str, str] = {
    "revoked": "revoked",
    "expired": "expired",
    "rotated": "rotated",
    "mismatch": "invalid-secret",
    "active": "wrong-environment",
    "rotating": "wrong-environment",
    "throttled": "throttled",
    "too-many-failed-attempts": "throttled",
    "ip-not-allowed": "wrong-network",
    "insufficient-scope": "insufficient-scope",
    "quota-exceeded": "rate-limited",
    "quota-exhausted": "quota-exhausted",
}
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")


def refusal_reason(slug: str) -> str | None:
    """Return the reason a refusal is counted under, or None for a malformed slug.

    Args:
        slug: a verify failure reason or a problem slug.
    """
    reason = REFUSAL_REASONS.get(slug)
    if reason is not None:
        return reason
    return slug if _SLUG_RE.fullmatch(slug) else None


def note_refusal(ctx: RequestContext, exc: BaseException) -> None:
    """Record on the request context which existing key a verify refused, and why.

    The audit record then carries it (``extra["auth_refusal"]``) and key analytics count it.
    Only a key the store knows is named (unknown ids never reach the analytics store), except
    ``throttled``, which is counted only for keys that already have activity.

    Args:
        ctx: the request context.
        exc: the :class:`~extapi_kit.exceptions.InvalidKeyError` the verify raised.
    """
    key_id = getattr(exc, "key_id", None)
    reason = getattr(exc, "reason", None)
    if isinstance(key_id, str) and isinstance(reason, str):
        ctx.extra[REFUSAL_EXTRA] = {"key_id": key_id, "reason": reason}


@dataclass(slots=True)
class Delta:
    """What one flush adds to one key's document.

    Args:
        counts: ``(day, field) -> n``.
        ips: address -> ``[count, first_seen, last_seen]``.
        agents: user agent -> ``[count, first_seen, last_seen]``.
        verified: True when a record proved the key exists (a principal, or a verify that found
            its record); a delta that is not verified only adds to an existing document.
    """

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    ips: dict[str, list[float]] = field(default_factory=dict)
    agents: dict[str, list[float]] = field(default_factory=dict)
    verified: bool = False

    def count(self, day: str, name: str, n: int = 1) -> None:
        """Add to a day counter.

        Args:
            day: the UTC date.
            name: the field.
            n: the increment.
        """
        k = (day, name)
        self.counts[k] = self.counts.get(k, 0) + n

    def absorb(self, other: Delta) -> None:
        """Add another delta of the same key into this one (a retry after a failed flush).

        Args:
            other: the newer delta.
        """
        for (day, name), n in other.counts.items():
            self.count(day, name, n)
        for mine, theirs in ((self.ips, other.ips), (self.agents, other.agents)):
            for value, (times, first, last) in theirs.items():
                seen(mine, value, first, int(times), last)
        self.verified = self.verified or other.verified


def seen(
    table: dict[str, list[float]], value: str, when: float, n: int = 1, last: float = 0
) -> None:
    """Count a sighting of ``value`` in a ``value -> [count, first, last]`` table.

    Args:
        table: the table.
        value: the address or agent.
        when: epoch seconds of the (first) sighting.
        n: how many sightings.
        last: epoch seconds of the last sighting (default ``when``).
    """
    last = last or when
    entry = table.get(value)
    if entry is None:
        table[value] = [n, when, last]
        return
    entry[0] += n
    if when < entry[1]:
        entry[1] = when
    if last > entry[2]:
        entry[2] = last


def day_of(ts: float) -> str:
    """Return the UTC date of epoch seconds ``ts`` as ``YYYY-MM-DD``.

    Args:
        ts: epoch seconds.
    """
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d")


def iso_utc(ts: float) -> str:
    """Return epoch seconds as ISO 8601 UTC (``2026-12-04T18:50:00Z``).

    Args:
        ts: epoch seconds.
    """
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat().replace("+00:00", "Z")


def _merge_seen(
    table: dict[str, list[float]], incoming: Mapping[str, list[float]], cap: int
) -> list[str]:
    new: list[str] = []
    # Oldest sightings first, so within one batch a later newcomer evicts an earlier one.
    for value, (n, first, last) in sorted(incoming.items(), key=lambda kv: (kv[1][2], kv[0])):
        entry = table.get(value)
        if entry is not None:
            entry[0] += n
            entry[1] = min(entry[1], first)
            entry[2] = max(entry[2], last)
            continue
        while len(table) >= cap:
            victim = min(table, key=lambda v: (table[v][0], table[v][2], v))
            del table[victim]
        table[value] = [n, first, last]
        new.append(value)
    return new


def merge(
    doc: dict[str, Any] | None,
    delta: Delta,
    now: float,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    max_ips: int = DEFAULT_MAX_IPS,
    max_agents: int = DEFAULT_MAX_AGENTS,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Return the document with ``delta`` added (or None to write nothing) and the new addresses.

    Entries older than the window are dropped first, so an address not seen for ``window_days``
    counts as new again.

    Args:
        doc: the stored document, or None when the key has none yet.
        delta: what to add.
        now: epoch seconds.
        window_days: days kept.
        max_ips: addresses kept per key.
        max_agents: user agents kept per key.
    """
    if doc is None:
        if not delta.verified:
            return None, []  # an unverified key id (a throttled attempt) never creates a document
        doc = {}
    days: dict[str, dict[str, int]] = doc.setdefault("days", {})
    ips: dict[str, list[float]] = doc.setdefault("ips", {})
    agents: dict[str, list[float]] = doc.setdefault("agents", {})
    first_day = day_of(now - (window_days - 1) * DAY)
    cutoff = now - window_days * DAY
    for d in [d for d in days if d < first_day]:
        del days[d]
    for table in (ips, agents):
        for v in [v for v, e in table.items() if e[2] < cutoff]:
            del table[v]
    for (day, name), n in delta.counts.items():
        if day < first_day:
            continue
        fields = days.setdefault(day, {})
        fields[name] = fields.get(name, 0) + n
    new_ips = _merge_seen(ips, delta.ips, max_ips)
    _merge_seen(agents, delta.agents, max_agents)
    return doc, new_ips


def _seen_list(table: Mapping[str, list[float]], name: str) -> list[dict[str, Any]]:
    rows = sorted(table.items(), key=lambda kv: (-kv[1][0], -kv[1][2], kv[0]))
    return [
        {name: v, "count": int(n), "first_seen": iso_utc(first), "last_seen": iso_utc(last)}
        for v, (n, first, last) in rows
    ]


def view(
    key_id: str,
    doc: Mapping[str, Any] | None,
    now: float,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    max_ips: int = DEFAULT_MAX_IPS,
    max_agents: int = DEFAULT_MAX_AGENTS,
) -> dict[str, Any]:
    """Return the analytics of one key over the window ending ``now``.

    Args:
        key_id: the key id.
        doc: its stored document (None: no activity).
        now: epoch seconds.
        window_days: the window.
        max_ips: the address bound (shown so a reader knows the list may be partial).
        max_agents: the user-agent bound.
    """
    first_day = day_of(now - (window_days - 1) * DAY)
    cutoff = now - window_days * DAY
    statuses = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    refused: dict[str, int] = {}
    requests = 0
    days = (doc or {}).get("days", {})
    for day, fields in days.items():
        if day < first_day:
            continue
        for name, n in fields.items():
            if name.startswith("r:"):
                refused[name[2:]] = refused.get(name[2:], 0) + int(n)
            else:
                statuses[name] = statuses.get(name, 0) + int(n)
                requests += int(n)
    errors = statuses.get("4xx", 0) + statuses.get("5xx", 0)
    ips = {v: e for v, e in (doc or {}).get("ips", {}).items() if e[2] >= cutoff}
    agents = {v: e for v, e in (doc or {}).get("agents", {}).items() if e[2] >= cutoff}
    return {
        "key_id": key_id,
        "window_days": window_days,
        "since": first_day,
        "until": iso_utc(now),
        "requests": requests,
        "status": statuses,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "refused": dict(sorted(refused.items())),
        "ips": _seen_list(ips, "ip"),
        "user_agents": _seen_list(agents, "user_agent"),
        "max_ips": max_ips,
        "max_user_agents": max_agents,
    }
