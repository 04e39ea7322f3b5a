"""Compiled policies and the response headers they produce.

IETF fields follow draft-ietf-httpapi-ratelimit-headers -10/-11 (structured-field lists)::

    RateLimit-Policy: "read";q=100;w=60
    RateLimit: "read";r=42;t=30

One list item per window; a policy with several windows names its items ``<policy>-<unit>``
(``"read-minute"``, ``"read-hour"``). ``t`` is delta-seconds, rounded up. The legacy
``X-RateLimit-Limit/-Remaining/-Reset`` fields (Reset in delta-seconds too) describe the request's
class policy; with several windows they carry the unit as a suffix (``X-RateLimit-Limit-Minute``),
as Kong and the OpenFrame gateway do. On a rejection the violated windows report
``t`` = the time until the request would fit, and ``Retry-After`` is the largest of them, so it is
never earlier than any reset the client was told (draft §4: SHOULD NOT be earlier than ``t``).
"""

from __future__ import annotations

from math import ceil

from extapi_kit.context import RateLimitInfo
from extapi_kit.ratelimit._result import HitResult
from extapi_kit.ratelimit.policy import RatePolicy

__all__ = ["Plan", "render"]


class Plan:
    """A policy with its storage-key heads and header fragments precomputed.

    Args:
        policy: the policy.
        key_prefix: the storage key prefix.
    """

    __slots__ = (
        "item_heads",
        "key_heads",
        "legacy_names",
        "limit_values",
        "names",
        "policy",
        "policy_header",
        "policy_value",
        "single",
        "windows",
    )

    def __init__(self, policy: RatePolicy, key_prefix: str) -> None:
        self.policy = policy
        self.names = tuple(policy.item_name(w) for w in policy.windows)
        self.windows = tuple((w.limit, w.seconds) for w in policy.windows)
        # Keys carry the policy name and window length, never the limit: changing a key's
        # limit at runtime keeps its count (so a lowered limit applies at once).
        self.key_heads = tuple(f"{key_prefix}:{policy.name}:{w.seconds}:" for w in policy.windows)
        self.policy_header = ", ".join(
            f'"{n}";q={w.limit};w={w.seconds}'
            for n, w in zip(self.names, policy.windows, strict=True)
        )
        single = len(policy.windows) == 1
        self.legacy_names = tuple(
            tuple(
                (f"x-ratelimit-{part}" if single else f"x-ratelimit-{part}-{w.label}").encode()
                for part in ("limit", "remaining", "reset")
            )
            for w in policy.windows
        )
        # Encoded once: the policy header value, each window's limit and each item's head.
        self.single = single
        self.policy_value = self.policy_header.encode()
        self.limit_values = tuple(str(w.limit).encode() for w in policy.windows)
        self.item_heads = tuple(f'"{n}";r='.encode() for n in self.names)


def render(
    plans: list[Plan],
    result: HitResult,
    *,
    ietf: bool,
    legacy: bool,
) -> tuple[list[tuple[bytes, bytes]], RateLimitInfo, list[str], int]:
    """Return ``(headers, info, violated item names, retry_after)`` for a decision.

    Args:
        plans: the policies hit, in the order their windows appear in ``result``.
        result: the backend's answer.
        ietf: emit ``RateLimit-Policy`` and ``RateLimit``.
        legacy: emit ``X-RateLimit-*`` for the first (class) policy.
    """
    if len(plans) == 1 and plans[0].single:
        return _render_single(plans[0], result, ietf=ietf, legacy=legacy)
    return _render_many(plans, result, ietf=ietf, legacy=legacy)


def _render_many(
    plans: list[Plan], result: HitResult, *, ietf: bool, legacy: bool
) -> tuple[list[tuple[bytes, bytes]], RateLimitInfo, list[str], int]:
    # The general case: several policies (class + owner) or several windows.
    headers: list[tuple[bytes, bytes]] = []
    items: list[bytes] = []
    violated: list[str] = []
    retry_after = 0
    best: tuple[float, str, int, int, float] | None = None
    states = result.windows
    i = 0
    for n, plan in enumerate(plans):
        for j, (limit, _seconds) in enumerate(plan.windows):
            used, reset, retry = states[i]
            i += 1
            remaining = limit - int(used)
            if remaining < 0:
                remaining = 0
            if retry > 0 and not result.allowed:
                t = ceil(retry)
                violated.append(plan.names[j])
                if t > retry_after:
                    retry_after = t
                rank = -retry
            else:
                t = ceil(reset)
                rank = float(remaining) if result.allowed else float("inf")
            if best is None or rank < best[0]:
                best = (rank, plan.names[j], limit, remaining, retry or reset)
            if ietf:
                items.append(b"%s%d;t=%d" % (plan.item_heads[j], remaining, t))
            if legacy and n == 0:
                names = plan.legacy_names[j]
                headers.append((names[0], plan.limit_values[j]))
                headers.append((names[1], b"%d" % remaining))
                headers.append((names[2], b"%d" % t))
    if ietf:
        headers.append((b"ratelimit-policy", b", ".join(p.policy_value for p in plans)))
        headers.append((b"ratelimit", b", ".join(items)))
    if not (best is not None):  # an internal invariant, not user input
        raise RuntimeError("plans always hold at least one window")
    info = RateLimitInfo(
        policy=best[1],
        limit=best[2],
        remaining=best[3],
        reset_after=best[4],
        allowed=result.allowed,
        degraded=result.degraded,
    )
    if not result.allowed:
        retry_after = max(retry_after, 1)
    return headers, info, violated, retry_after


def _render_single(
    plan: Plan, result: HitResult, *, ietf: bool, legacy: bool
) -> tuple[list[tuple[bytes, bytes]], RateLimitInfo, list[str], int]:
    # The common case, one policy with one window: the same headers as the loop, fewer steps.
    limit = plan.windows[0][0]
    used, reset, retry = result.windows[0]
    remaining = limit - int(used)
    if remaining < 0:
        remaining = 0
    allowed = result.allowed
    violated: list[str] = []
    if retry > 0 and not allowed:
        t = ceil(retry)
        violated.append(plan.names[0])
        retry_after = max(t, 1)
    else:
        t = ceil(reset)
        retry_after = 0 if allowed else 1
    headers: list[tuple[bytes, bytes]] = []
    if legacy:
        names = plan.legacy_names[0]
        headers.append((names[0], plan.limit_values[0]))
        headers.append((names[1], b"%d" % remaining))
        headers.append((names[2], b"%d" % t))
    if ietf:
        headers.append((b"ratelimit-policy", plan.policy_value))
        headers.append((b"ratelimit", b"%s%d;t=%d" % (plan.item_heads[0], remaining, t)))
    info = RateLimitInfo(
        policy=plan.names[0],
        limit=limit,
        remaining=remaining,
        reset_after=retry or reset,
        allowed=allowed,
        degraded=result.degraded,
    )
    return headers, info, violated, retry_after
