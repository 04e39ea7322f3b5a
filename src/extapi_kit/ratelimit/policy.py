"""Rate-limit policies: named budgets of one or more windows, path rules and per-key overrides.

A policy is a name (it appears in the ``RateLimit-Policy`` header, so it must be a plain token)
and one or more windows, each ``limit`` units per ``seconds``. Strings use the ``limits``
notation: ``"100/minute"``, ``"100/minute;2000/hour"``, ``"10 per 30 seconds"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many

from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "RateLimitRule",
    "RatePolicy",
    "Window",
    "compile_rules",
    "parse_policy",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,64}$")
# ``limits`` reads "1/0 seconds" as one second (a zero multiple counts as none); refuse it rather
# than enforce a window nobody asked for (issue 15, M10).
_ZERO_MULTIPLE_RE = re.compile(r"(?:/|per)\s*0+\s*[a-z]", re.IGNORECASE)
# Bounds every backend can hold: a JSON-safe integer limit, a window of at most ten years.
MAX_LIMIT = 2**53 - 1
MAX_WINDOW_SECONDS = 10 * 366 * 86400
_OVERRIDE_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a policy: at most ``limit`` units per ``seconds``.

    Args:
        limit: units admitted per window.
        seconds: window length in seconds.
        label: a short unit name used in legacy header suffixes (``"minute"``, ``"10second"``).
    """

    limit: int
    seconds: int
    label: str


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """A named budget with one or more windows; every window must admit a request.

    Args:
        name: the policy name shown in headers and problem bodies (``[A-Za-z0-9_.:/@+-]``).
        windows: the windows, shortest first.
    """

    name: str
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ConfigurationError(f"invalid rate-limit policy name: {self.name!r}")
        if not self.windows:
            raise ConfigurationError(f"policy {self.name!r} has no windows")
        seconds = [w.seconds for w in self.windows]
        if len(set(seconds)) != len(seconds):
            raise ConfigurationError(f"policy {self.name!r} has two windows of the same length")

    @classmethod
    def parse(cls, name: str, spec: str | Sequence[str] | RatePolicy) -> RatePolicy:
        """Build a policy from a rate string, a list of them, or rename an existing policy.

        Args:
            name: the policy name.
            spec: ``"100/minute"``, ``"100/minute;2000/hour"``, ``["100/minute", "2000/hour"]``
                or a :class:`RatePolicy` (its windows are reused under ``name``).
        """
        if isinstance(spec, RatePolicy):
            return spec if spec.name == name else cls(name, spec.windows)
        return cls(name, _parse_windows(spec))

    def item_name(self, window: Window) -> str:
        """Return the header item name of one window (the policy name, suffixed when several).

        Args:
            window: one of this policy's windows.
        """
        return self.name if len(self.windows) == 1 else f"{self.name}-{window.label}"


def parse_policy(name: str, spec: str | Sequence[str] | RatePolicy) -> RatePolicy:
    """Shorthand for :meth:`RatePolicy.parse`.

    Args:
        name: the policy name.
        spec: a rate string, a list of them, or a policy.
    """
    return RatePolicy.parse(name, spec)


def _label(item: RateLimitItem) -> str:
    unit = str(item.GRANULARITY.name)
    return unit if item.multiples == 1 else f"{item.multiples}{unit}"


def _parse_windows(spec: str | Sequence[str]) -> tuple[Window, ...]:
    if isinstance(spec, str):
        parts: list[object] = [spec]
    elif isinstance(spec, Sequence):
        parts = list(spec)
    else:
        raise ConfigurationError(f"invalid rate limit: {spec!r}")
    items: list[RateLimitItem] = []
    for part in parts:
        if not isinstance(part, str):
            raise ConfigurationError(f"invalid rate limit: {part!r}")
        try:
            items.extend(parse_many(part))
        except ValueError:
            raise ConfigurationError(
                f"invalid rate limit {part!r} (examples: '100/minute', '100/minute;2000/hour')"
            ) from None
        if _ZERO_MULTIPLE_RE.search(part):
            raise ConfigurationError(f"invalid rate limit {part!r}: a window of 0 units")
    windows = [Window(int(i.amount), int(i.get_expiry()), _label(i)) for i in items]
    if not windows:
        raise ConfigurationError(f"invalid rate limit: {spec!r}")
    for w in windows:
        if w.limit > MAX_LIMIT or not 1 <= w.seconds <= MAX_WINDOW_SECONDS:
            raise ConfigurationError(
                f"invalid rate limit {spec!r}: limits go up to {MAX_LIMIT}, windows from 1 second"
                " to 10 years"
            )
    return tuple(sorted(windows, key=lambda w: w.seconds))


class OverrideCache:
    """Parsed per-key overrides (``Principal.rate_limits``), bounded, so a limit stored on a key
    record can change at runtime and the next request uses it without a restart."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], RatePolicy | None] = {}

    def get(self, name: str, spec: str) -> RatePolicy | None:
        """Return the policy for an override string, or None when it does not parse.

        Args:
            name: the class name (``"read"``).
            spec: the override string from the key record.
        """
        key = (name, spec)
        try:
            return self._cache[key]
        except KeyError:
            pass
        try:
            policy: RatePolicy | None = RatePolicy.parse(name, spec)
        except (ConfigurationError, TypeError):
            policy = None
        if len(self._cache) >= _OVERRIDE_CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = policy
        return policy


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """A per-path override: which class a path counts against, at what cost.

    Args:
        path: a prefix (``"/api/v1/search"`` matches it and everything below) or a template
            whose ``{name}`` segments match exactly one path segment (``"/items/{id}"``).
        rate_class: the class (policy name) to count against; None keeps the method's class.
        limits: give this path its own policy (named ``rate_class``, required then).
        cost: units one request consumes.
        exempt: do not limit this path at all.
    """

    path: str
    rate_class: str | None = None
    limits: str | tuple[str, ...] | None = None
    cost: int = 1
    exempt: bool = False

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ConfigurationError(f"rule path must start with '/': {self.path!r}")
        if isinstance(self.cost, bool) or not isinstance(self.cost, int) or self.cost < 0:
            raise ConfigurationError(f"rule cost must be a non-negative int: {self.cost!r}")
        if self.limits is not None and not self.rate_class:
            raise ConfigurationError(f"rule {self.path!r} sets limits but no rate_class name")


class CompiledRule:
    """A rule with its matcher prepared (private to the middleware)."""

    __slots__ = ("_prefix", "_regex", "rule")

    def __init__(self, rule: RateLimitRule) -> None:
        self.rule = rule
        self._regex: re.Pattern[str] | None = None
        self._prefix = rule.path.rstrip("/") or "/"
        if "{" in rule.path:
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(self._prefix))
            self._regex = re.compile(f"^{pattern}/?$")

    def matches(self, path: str) -> bool:
        if self._regex is not None:
            return self._regex.match(path) is not None
        p = self._prefix
        return p == "/" or path == p or path.startswith(p + "/")


def compile_rules(
    rules: Sequence[RateLimitRule] | Mapping[str, str | int | RateLimitRule] | None,
) -> tuple[CompiledRule, ...]:
    """Normalise the ``rules=`` argument; longer (more specific) paths are tried first.

    Args:
        rules: a list of :class:`RateLimitRule`, or a mapping path -> class name, cost (int)
            or rule.
    """
    if not rules:
        return ()
    out: list[RateLimitRule] = []
    if isinstance(rules, Mapping):
        for path, value in rules.items():
            if isinstance(value, RateLimitRule):
                out.append(value)
            elif isinstance(value, bool):
                raise ConfigurationError(f"invalid rule for {path!r}: {value!r}")
            elif isinstance(value, int):
                out.append(RateLimitRule(path, cost=value))
            elif isinstance(value, str):
                out.append(RateLimitRule(path, rate_class=value))
            else:
                raise ConfigurationError(f"invalid rule for {path!r}: {value!r}")
    else:
        for value in rules:
            if not isinstance(value, RateLimitRule):
                raise ConfigurationError(f"invalid rule: {value!r}")
            out.append(value)
    out.sort(key=lambda r: len(r.path), reverse=True)
    return tuple(CompiledRule(r) for r in out)
