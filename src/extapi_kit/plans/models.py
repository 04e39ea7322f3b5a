"""A named plan (tier): :class:`Plan`, and how a plan shapes a key's principal.

A plan bundles what a tier of customers gets: rate limits per class, usage quotas, a ceiling on
the scopes its keys may use and a request body limit. A key is on a plan through its own ``plan``
field, or through its owner's plan when it has none. What the key sets itself wins over the plan
(per rate class, per quota period); the scope ceiling is never widened by the key.

Scope ceiling: refused on assignment *and* intersected at use. Creating or changing a key so it is
on a plan while holding a scope outside the ceiling is refused (422 naming ``scopes``); and at
verify time the key's scopes are intersected with the ceiling, so a plan narrowed later, or an
owner moved to a smaller plan, takes effect at once without touching the keys (case K3).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from extapi_kit._units import parse_size
from extapi_kit.context import Principal, scope_matches
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys import _validation as v

__all__ = [
    "PLAN_NAME_RULE",
    "Plan",
    "UnknownPlanError",
    "apply_plan",
    "check_plan_name",
    "exceeding_scopes",
    "within_ceiling",
]

_PLAN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
PLAN_NAME_RULE = "a plan name is 1-40 characters of a-z 0-9 _ -, starting with a letter or digit"
MAX_BODY_LIMIT = 2**40


class UnknownPlanError(ConfigurationError):
    """A key or owner names a plan that does not exist.

    Args:
        name: the plan name given.
        field: the field that named it (``"plan"``).
    """

    def __init__(self, name: str, field: str = "plan") -> None:
        super().__init__(f"{field}: unknown plan {name!r}")
        self.plan = name
        self.field = field


def check_plan_name(name: object, what: str = "plan") -> str:
    """Return a valid plan name or raise ConfigurationError naming ``what``.

    Args:
        name: the value.
        what: the field, for the message.
    """
    if not isinstance(name, str) or not _PLAN_NAME_RE.fullmatch(name):
        raise ConfigurationError(f"{what}: invalid plan name {name!r}; {PLAN_NAME_RULE}")
    return name


@dataclass(frozen=True, slots=True)
class Plan:
    """A named bundle of limits that keys and owners are assigned to.

    Args:
        name: the plan name (``free``, ``pro``, ``enterprise``); also names its rate-limit
            policies in ``RateLimit-Policy`` (``"pro.read"``).
        description: free text.
        rate_limits: limits per rate class, e.g. ``{"read": "1000/minute"}``.
        quota: usage quotas, ``{"daily": N}`` and/or ``{"monthly": N}``.
        scopes: the scope ceiling: keys on the plan use at most these scopes (wildcards allowed);
            None means no ceiling.
        body_limit: largest request body in bytes for keys on the plan, or None.
        created_at: creation time, epoch seconds.
        updated_at: last change, epoch seconds.
    """

    name: str
    description: str = ""
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    quota: Mapping[str, int] = field(default_factory=dict)
    scopes: tuple[str, ...] | None = None
    body_limit: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def build(
        cls,
        name: str,
        *,
        description: str = "",
        rate_limits: Mapping[str, str] | None = None,
        quota: Mapping[str, Any] | None = None,
        scopes: Iterable[str] | str | None = None,
        body_limit: int | str | None = None,
        created_at: float = 0.0,
        updated_at: float = 0.0,
    ) -> Plan:
        """Return a validated plan (ConfigurationError names the field that is wrong).

        Args:
            name: the plan name.
            description: free text.
            rate_limits: class -> rate string.
            quota: period -> count.
            scopes: the scope ceiling, or None for none.
            body_limit: bytes or a size string (``"1MiB"``), or None.
            created_at: creation time.
            updated_at: last change.
        """
        if body_limit is not None:
            try:
                body_limit = parse_size(body_limit)
            except ConfigurationError as exc:
                raise ConfigurationError(f"body_limit: {exc}") from None
            if not 0 < body_limit <= MAX_BODY_LIMIT:
                raise ConfigurationError(f"body_limit must be 1 byte to 1 TiB: {body_limit!r}")
        desc = v.check_name(description, "description", max_length=2000) if description else ""
        return cls(
            name=check_plan_name(name, "name"),
            description=desc,
            rate_limits=v.check_rate_limits(rate_limits),
            quota=v.check_quota(quota),
            scopes=None if scopes is None else v.check_scopes(scopes),
            body_limit=body_limit,
            created_at=created_at,
            updated_at=updated_at,
        )

    def policy_names(self) -> dict[str, str]:
        """Return rate class -> the policy name shown in ``RateLimit-Policy`` for this plan."""
        return {cls_: f"{self.name}.{cls_}" for cls_ in self.rate_limits}

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able stored form."""
        return {
            "name": self.name,
            "description": self.description,
            "rate_limits": dict(self.rate_limits),
            "quota": dict(self.quota),
            "scopes": None if self.scopes is None else list(self.scopes),
            "body_limit": self.body_limit,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Build a plan from :meth:`to_dict` output (unknown fields are ignored).

        Args:
            data: the stored dict.
        """
        scopes = data.get("scopes")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            rate_limits=dict(data.get("rate_limits") or {}),
            quota=dict(data.get("quota") or {}),
            scopes=None if scopes is None else tuple(scopes),
            body_limit=data.get("body_limit"),
            created_at=float(data.get("created_at") or 0.0),
            updated_at=float(data.get("updated_at") or 0.0),
        )


def within_ceiling(granted: Iterable[str], ceiling: Iterable[str]) -> frozenset[str]:
    """Return the scopes that remain of ``granted`` under ``ceiling`` (wildcards on both sides).

    A granted scope stays when the ceiling covers it; a ceiling scope is added when a granted
    wildcard covers it (``projects:*`` under ``projects:read`` gives ``projects:read``). So a
    required scope is held afterwards exactly when both the key and the ceiling cover it.

    Args:
        granted: the key's scopes.
        ceiling: the plan's scopes.
    """
    granted = tuple(granted)
    ceiling = tuple(ceiling)
    kept = {g for g in granted if any(scope_matches(c, g) for c in ceiling)}
    kept.update(c for c in ceiling if any(scope_matches(g, c) for g in granted))
    return frozenset(kept)


def exceeding_scopes(granted: Iterable[str], ceiling: Iterable[str] | None) -> list[str]:
    """Return the granted scopes that the ceiling does not cover (empty: all within).

    Args:
        granted: the key's scopes.
        ceiling: the plan's scopes, or None for no ceiling.
    """
    if ceiling is None:
        return []
    ceiling = tuple(ceiling)
    return [g for g in granted if not any(scope_matches(c, g) for c in ceiling)]


def apply_plan(principal: Principal, plan: Plan | None, name: str | None) -> Principal:
    """Return the principal of a key on a plan: the plan's limits under the key's own.

    Args:
        principal: the key's own principal.
        plan: the plan, or None when ``name`` names a plan that does not exist.
        name: the effective plan name (the key's, else its owner's); None: no plan.
    """
    if name is None:
        return principal
    if plan is None:
        # Fail closed: a plan we cannot find cannot tell us its ceiling, so no scope passes
        # until it exists again (the key still authenticates; scoped routes answer 403).
        return dataclasses.replace(principal, plan=name, scopes=frozenset())
    scopes = principal.scopes
    if plan.scopes is not None:
        scopes = within_ceiling(scopes, plan.scopes)
    return dataclasses.replace(
        principal,
        plan=plan.name,
        scopes=scopes,
        rate_limits={**plan.rate_limits, **principal.rate_limits},
        quota={**plan.quota, **principal.quota},
        body_limit=plan.body_limit,
    )
