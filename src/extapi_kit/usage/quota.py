"""Quota decisions: which counters a request charges, the answer, and its headers.

A quota (``{"monthly": 10000}`` or ``{"daily": 500}``, on the key or its owner) is a budget per UTC
calendar period, charged by the route's ``cost`` and refused with 429 ``quota-exhausted`` once
spent. It is distinct from the per-minute rate limits: those protect the platform second by
second and refill continuously; a quota is the business allowance and resets at the period
boundary. Its policy rides in the same ``RateLimit-Policy``/``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers) as extra list items named ``"quota"`` (key, monthly),
``"quota-daily"``, ``"owner-quota"`` and ``"owner-quota-daily"``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import ceil
from typing import Any

from extapi_kit.usage._periods import DAY, MONTHLY, PERIOD_WINDOW, DayInfo, QuotaRule, parse_quota
from extapi_kit.usage.store import QuotaCheck

__all__ = [
    "EVENT_EXHAUSTED",
    "EVENT_WARNING",
    "OwnerQuotas",
    "QuotaDecision",
    "QuotaLine",
    "QuotaPlan",
    "plan_checks",
]

EVENT_WARNING = "api_key.quota_warning"
EVENT_EXHAUSTED = "api_key.quota_exhausted"
WARNING_PERCENT = 80
# Counters and marks outlive their period by a day, so a late flush or clock skew between
# workers still meets them.
_GRACE = DAY

OwnerQuotas = Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class QuotaLine:
    """One quota that applies to a request.

    Args:
        scope: ``"key"`` or ``"owner"``.
        subject: ``"k:<key id>"`` or ``"o:<owner>"``.
        rule: the period and limit.
        period_id: ``"YYYY-MM"`` or ``"YYYY-MM-DD"``.
        reset: epoch seconds of the period's end.
        name: the ``RateLimit-Policy`` item name.
    """

    scope: str
    subject: str
    rule: QuotaRule
    period_id: str
    reset: float
    name: str

    @property
    def counter(self) -> str:
        """The quota counter's name in the store."""
        return f"{self.subject}:{self.rule.period}:{self.period_id}"

    def check(self, now: float) -> QuotaCheck:
        """Return the store check for this line.

        Args:
            now: epoch seconds.
        """
        return QuotaCheck(self.counter, self.rule.limit, int(self.reset - now) + _GRACE)

    def event_data(self, key_id: str, owner: str | None, used: int) -> dict[str, Any]:
        """Return the payload of a quota notification.

        Args:
            key_id: the key whose request crossed the threshold.
            owner: its owner.
            used: units used in the period.
        """
        resets = _dt.datetime.fromtimestamp(self.reset, tz=_dt.UTC)
        return {
            "key_id": key_id,
            "owner": owner,
            "scope": self.scope,
            "period": self.rule.period,
            "period_id": self.period_id,
            "limit": self.rule.limit,
            "used": used,
            "resets_at": resets.isoformat().replace("+00:00", "Z"),
        }


class QuotaPlan:
    """The quotas one request is subject to, with their store checks and policy items.

    Plans are cached per key, owner and day, so the hot path builds nothing for them.

    Args:
        lines: the quotas, key quotas first.
        now: when the plan was made (for the counters' expiry).
    """

    __slots__ = ("checks", "lines", "policy", "warn_at")

    def __init__(self, lines: list[QuotaLine], now: float) -> None:
        self.lines = lines
        self.checks = [line.check(now) for line in lines]
        # Units from which a line is past the warning threshold (computed once per plan).
        self.warn_at = [ceil(line.rule.limit * WARNING_PERCENT / 100) for line in lines]
        self.policy = ", ".join(
            f'"{line.name}";q={line.rule.limit};w={PERIOD_WINDOW[line.rule.period]}'
            for line in lines
        ).encode()


@dataclass(slots=True)
class QuotaDecision:
    """The outcome of charging a request's quotas.

    Args:
        allowed: whether every quota had room (then all were charged).
        plan: the quotas that applied.
        used: each quota's units after the charge (or unchanged, when refused).
        now: when the decision was made.
    """

    allowed: bool
    plan: QuotaPlan
    used: list[int]
    now: float

    def violated(self, cost: int) -> list[QuotaLine]:
        """Return the quotas that refused the request.

        Args:
            cost: the request's cost.
        """
        return [
            line
            for line, u in zip(self.plan.lines, self.used, strict=True)
            if u + cost > line.rule.limit
        ]

    def retry_after(self, cost: int) -> int:
        """Seconds until every violated quota has reset (at least 1).

        Args:
            cost: the request's cost.
        """
        return max([1, *(ceil(line.reset - self.now) for line in self.violated(cost))])

    def headers(self) -> tuple[bytes, bytes]:
        """Return the ``RateLimit-Policy`` and ``RateLimit`` list items for these quotas."""
        now = self.now
        lines = self.plan.lines
        if len(lines) == 1:  # the common case, without a generator and a join
            line = lines[0]
            left = line.rule.limit - self.used[0]
            until = ceil(line.reset - now)
            item = f'"{line.name}";r={left if left > 0 else 0};t={until if until > 1 else 1}'
            return self.plan.policy, item.encode()
        state = ", ".join(
            f'"{line.name}";r={max(0, line.rule.limit - u)};t={max(1, ceil(line.reset - now))}'
            for line, u in zip(lines, self.used, strict=True)
        )
        return self.plan.policy, state.encode()


def _name(scope: str, period: str) -> str:
    head = "quota" if scope == "key" else "owner-quota"
    return head if period == MONTHLY else f"{head}-{period}"


def plan_checks(
    info: DayInfo,
    key_id: str,
    key_rules: tuple[QuotaRule, ...],
    owner: str | None,
    owner_rules: tuple[QuotaRule, ...],
) -> list[QuotaLine]:
    """Return the quota lines of one request (key quotas first, then the owner's).

    Args:
        info: the request's UTC day.
        key_id: the key id.
        key_rules: the key's quotas.
        owner: the owner id, if any.
        owner_rules: the owner's quotas.
    """
    lines = []
    for rule in key_rules:
        period_id, reset = info.period(rule.period)
        lines.append(
            QuotaLine("key", "k:" + key_id, rule, period_id, reset, _name("key", rule.period))
        )
    if owner is not None:
        for rule in owner_rules:
            period_id, reset = info.period(rule.period)
            lines.append(
                QuotaLine(
                    "owner", "o:" + owner, rule, period_id, reset, _name("owner", rule.period)
                )
            )
    return lines


class RuleCache:
    """Parsed quota mappings, keyed by the mapping object (principals are cached by auth)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Mapping[str, Any], tuple[QuotaRule, ...]]] = {}

    def get(self, spec: Mapping[str, Any]) -> tuple[QuotaRule, ...]:
        """Return the parsed rules of ``spec`` (raises ConfigurationError when invalid).

        Args:
            spec: the quota mapping.
        """
        entry = self._entries.get(id(spec))
        if entry is not None and entry[0] is spec:
            return entry[1]
        rules = parse_quota(spec)
        if len(self._entries) >= 4096:
            self._entries.clear()
        # Holding the mapping keeps its id from being reused while the entry lives.
        self._entries[id(spec)] = (spec, rules)
        return rules
