"""Validation of the values a key carries (names, scopes, grants, limits, CIDRs, metadata)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from extapi_kit.clientip import parse_networks
from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "check_cidrs",
    "check_grants",
    "check_json",
    "check_name",
    "check_rate_limits",
    "check_scopes",
]

_SCOPE_RE = re.compile(r"[A-Za-z0-9:_.*-]{1,128}")
_NAME_RE = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
MAX_JSON = 16 * 1024


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


def check_scopes(scopes: Iterable[str] | str) -> tuple[str, ...]:
    """Return validated, de-duplicated scopes in order.

    Args:
        scopes: scope strings (``"projects:read"``, ``"projects:*"``) or one comma-separated string.
    """
    if isinstance(scopes, str):
        scopes = [s for s in scopes.split(",") if s.strip()]
    out: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_RE.fullmatch(scope.strip()):
            raise ConfigurationError(f"invalid scope {scope!r}: use 1-128 of [A-Za-z0-9:_.*-]")
        if scope.strip() not in out:
            out.append(scope.strip())
    return tuple(out)


def check_grants(grants: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    """Return validated resource grants: type -> ids (``"*"`` = all).

    Args:
        grants: e.g. ``{"projects": ["7", "9"]}``.
    """
    out: dict[str, tuple[str, ...]] = {}
    for kind, ids in (grants or {}).items():
        if not isinstance(kind, str) or not _NAME_RE.fullmatch(kind):
            raise ConfigurationError(f"invalid grant type {kind!r}")
        if isinstance(ids, str):
            ids = [ids]
        values = tuple(dict.fromkeys(str(i) for i in ids))
        if not values or any(not v or len(v) > 128 or not v.isprintable() for v in values):
            raise ConfigurationError(f"invalid ids in grant {kind!r}")
        out[kind] = values
    return out


def check_rate_limits(limits_: Mapping[str, str] | None) -> dict[str, str]:
    """Return validated per-key limits (parsed once with ``limits.parse_many`` to fail early).

    Args:
        limits_: class name -> rate string, e.g. ``{"read": "500/minute"}``.
    """
    from limits import parse_many

    out: dict[str, str] = {}
    for name, rate in (limits_ or {}).items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigurationError(f"invalid rate-limit class {name!r}")
        try:
            if not isinstance(rate, str) or not parse_many(rate):
                raise ValueError(rate)
        except ValueError:
            raise ConfigurationError(
                f"invalid rate {rate!r} for {name!r} (e.g. '500/minute')"
            ) from None
        out[name] = rate
    return out


def check_cidrs(cidrs: Iterable[str] | str | None) -> tuple[str, ...]:
    """Return normalised CIDR strings.

    Args:
        cidrs: addresses or networks.
    """
    if cidrs is None:
        return ()
    return tuple(dict.fromkeys(str(n) for n in parse_networks(cidrs)))


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
        text = json.dumps(dict(value))
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be JSON-serialisable") from None
    if len(text) > MAX_JSON:
        raise ConfigurationError(f"{what} is larger than {MAX_JSON} bytes")
    result: dict[str, Any] = json.loads(text)
    return result
