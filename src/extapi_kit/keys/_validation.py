"""Validation of the values a key carries (names, scopes, grants, limits, CIDRs, quota, metadata).

Every setting is checked where it enters (the Python API; the admin API and the CLI go through
it), and a value that would be stored but ignored later, or break a request, is refused with a
ConfigurationError naming the field (``quota.monthly``, ``rate_limits.read``; issue 15, M10).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from extapi_kit.clientip import parse_networks
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.ratelimit.policy import RatePolicy
from extapi_kit.usage._periods import DAILY, MONTHLY

__all__ = [
    "check_cidrs",
    "check_grants",
    "check_json",
    "check_name",
    "check_quota",
    "check_rate_limits",
    "check_scopes",
    "parse_scopes",
]

# One scope rule for the Python API, the admin API, the console and the CLI (issue 18 §4): scopes
# are lowercase, because a route's required scope is compared exactly and "PROJECTS:READ" would be
# stored and never match; several are separated by commas, whitespace or both.
_SCOPE_RE = re.compile(r"[a-z0-9:_.*-]{1,128}")
_SCOPE_SEP = re.compile(r"[\s,]+")
SCOPE_RULE = (
    "a scope is 1-128 lowercase characters of a-z 0-9 : _ . * - (e.g. 'projects:read' or "
    "'projects:*'); separate several with commas or spaces"
)
_NAME_RE = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
MAX_JSON = 16 * 1024
# Quota limits stay JSON-safe integers (the console and JS clients read them exactly).
MAX_QUOTA = 2**53 - 1


def _is_list_like(value: object) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def check_name(name: str, what: str = "name", *, max_length: int = 200) -> str:
    """Return a stripped, non-empty, printable name.

    Args:
        name: the value.
        what: what it is, for the error message.
        max_length: maximum length.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > max_length:
        raise ConfigurationError(f"{what} must be 1-{max_length} characters")
    if not name.isprintable():
        raise ConfigurationError(f"{what} must be printable text")
    return name.strip()


def parse_scopes(scopes: Iterable[str] | str) -> tuple[str, ...]:
    """Return validated, de-duplicated scopes in order (the one scope rule, :data:`SCOPE_RULE`).

    Text (the CLI's ``--scopes``, the console's field, the admin API's string form) holds
    several scopes separated by commas, whitespace or both (``"a,b"``, ``"a b"``, ``"a, b"``); a
    list holds one scope per item. A scope is lowercase: an upper-case one is refused with its
    lower-case spelling in the message rather than stored and never matched.

    Args:
        scopes: scope strings (``"projects:read"``, ``"projects:*"``) or one string of them.
    """
    if isinstance(scopes, str):
        items: list[object] = [s for s in _SCOPE_SEP.split(scopes) if s]
    elif _is_list_like(scopes):
        items = list(scopes)
    else:
        raise ConfigurationError(f"scopes must be a list of scope strings, not {scopes!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"invalid scope {item!r}: scopes are strings; {SCOPE_RULE}")
        scope = item.strip()
        if not _SCOPE_RE.fullmatch(scope):
            raise ConfigurationError(_scope_error(scope))
        if scope not in out:
            out.append(scope)
    return tuple(out)


def _scope_error(scope: str) -> str:
    shown = repr(scope[:64] + ("..." if len(scope) > 64 else ""))
    if _SCOPE_SEP.search(scope):
        return f"invalid scope {shown}: a list holds one scope per item ({SCOPE_RULE})"
    lower = scope.lower()
    hint = f" (did you mean {lower!r}?)" if _SCOPE_RE.fullmatch(lower) else ""
    return f"invalid scope {shown}{hint}: {SCOPE_RULE}"


def check_scopes(scopes: Iterable[str] | str) -> tuple[str, ...]:
    """Return validated, de-duplicated scopes in order (same as :func:`parse_scopes`).

    Args:
        scopes: scope strings or one string of them (commas and/or spaces).
    """
    return parse_scopes(scopes)


def check_grants(grants: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    """Return validated resource grants: type -> ids (``"*"`` = all).

    Args:
        grants: e.g. ``{"projects": ["7", "9"]}``.
    """
    if grants is None:
        return {}
    if not isinstance(grants, Mapping):
        raise ConfigurationError(f"grants must be a mapping of resource type to ids: {grants!r}")
    out: dict[str, tuple[str, ...]] = {}
    for kind, ids in grants.items():
        if not isinstance(kind, str) or not _NAME_RE.fullmatch(kind):
            raise ConfigurationError(f"invalid grants type {kind!r}: use 1-64 of [A-Za-z0-9:_.-]")
        raw: object = [ids] if isinstance(ids, str) else ids
        if not isinstance(raw, Iterable) or not _is_list_like(raw):
            raise ConfigurationError(f"grants.{kind} must be a list of ids: {raw!r}")
        items: list[object] = list(raw)
        if any(isinstance(i, bool) or not isinstance(i, str | int) for i in items):
            raise ConfigurationError(f"grants.{kind} must be a list of ids: {items!r}")
        values = tuple(dict.fromkeys(str(i) for i in items))
        if not values or any(not v or len(v) > 128 or not v.isprintable() for v in values):
            raise ConfigurationError(
                f"grants.{kind} must hold 1 or more ids of 1-128 printable characters"
            )
        out[kind] = values
    return out


def check_rate_limits(limits_: Mapping[str, str] | None) -> dict[str, str]:
    """Return validated per-key limits, parsed as the rate limiter will parse them.

    Args:
        limits_: class name -> rate string, e.g. ``{"read": "500/minute"}``.
    """
    if limits_ is None:
        return {}
    if not isinstance(limits_, Mapping):
        raise ConfigurationError(f"rate_limits must be a mapping of class to rate: {limits_!r}")
    out: dict[str, str] = {}
    for name, rate in limits_.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigurationError(
                f"invalid rate_limits class {name!r}: use 1-64 of [A-Za-z0-9:_.-]"
            )
        if not isinstance(rate, str):
            raise ConfigurationError(
                f"rate_limits.{name} must be a rate string such as '500/minute'"
            )
        try:
            # The same parser the rate limiter uses for overrides, so what is stored is enforced.
            RatePolicy.parse(name, rate)
        except ConfigurationError as exc:
            raise ConfigurationError(f"rate_limits.{name}: {exc} (e.g. '500/minute')") from None
        out[name] = rate
    return out


def check_cidrs(cidrs: Iterable[str] | str | None) -> tuple[str, ...]:
    """Return normalised CIDR strings.

    Args:
        cidrs: addresses or networks.
    """
    if cidrs is None:
        return ()
    if not isinstance(cidrs, str) and (
        not _is_list_like(cidrs) or any(not isinstance(c, str) for c in cidrs)
    ):
        raise ConfigurationError(f"allowed_cidrs must be a list of networks: {cidrs!r}")
    try:
        return tuple(dict.fromkeys(str(n) for n in parse_networks(cidrs)))
    except ConfigurationError as exc:
        raise ConfigurationError(f"allowed_cidrs: {exc}") from None


def check_quota(quota: Mapping[str, Any] | None) -> dict[str, int]:
    """Return a validated quota: ``{"monthly": N}`` and/or ``{"daily": N}``, N a whole number.

    Anything else would be stored and never enforced (an unknown period, a string, a float, a
    negative number, ``true``, infinity), so it is refused.

    Args:
        quota: the quota mapping, or None for none.
    """
    if quota is None:
        return {}
    if not isinstance(quota, Mapping):
        raise ConfigurationError(f"quota must be a mapping such as {{'monthly': 10000}}: {quota!r}")
    out: dict[str, int] = {}
    for period, limit in quota.items():
        if period not in (MONTHLY, DAILY):
            raise ConfigurationError(
                f"quota.{period}: unknown quota period (use {MONTHLY!r} or {DAILY!r})"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_QUOTA:
            raise ConfigurationError(
                f"quota.{period} must be a whole number from 0 to {MAX_QUOTA}: {limit!r}"
            )
        out[period] = limit
    return out


def check_json(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """Return a JSON-able dict of at most 16 KiB.

    Args:
        value: the mapping.
        what: its name, for errors.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping")
    try:
        # No NaN or Infinity: they are not JSON, and would come back as null (M10).
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be JSON-serialisable (no NaN or Infinity)") from None
    if len(text) > MAX_JSON:
        raise ConfigurationError(f"{what} is larger than {MAX_JSON} bytes")
    result: dict[str, Any] = json.loads(text)
    return result
