"""Header rendering: the single-window fast path gives byte-for-byte the general loop's answer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.ratelimit._headers import Plan, _render_many, _render_single, render
from extapi_kit.ratelimit._result import HitResult
from extapi_kit.ratelimit.policy import RatePolicy

_SPECS = ("1/second", "100/minute", "5000/hour", "1000000000/minute")


@given(
    spec=st.sampled_from(_SPECS),
    used=st.floats(min_value=0, max_value=2e9, allow_nan=False),
    reset=st.floats(min_value=0, max_value=3600, allow_nan=False),
    retry=st.sampled_from([0.0, 0.001, 0.5, 3.7, 60.0]),
    allowed=st.booleans(),
    degraded=st.booleans(),
    ietf=st.booleans(),
    legacy=st.booleans(),
)
def test_single_window_fast_path_matches_general_loop(
    spec: str,
    used: float,
    reset: float,
    retry: float,
    allowed: bool,
    degraded: bool,
    ietf: bool,
    legacy: bool,
) -> None:
    """One policy with one window: same headers, info, violated names and Retry-After (L4)."""
    plan = Plan(RatePolicy.parse("read", spec), "rl")
    fast = _render_single(
        plan, HitResult(allowed, [[used, reset, retry]], degraded), ietf=ietf, legacy=legacy
    )
    slow = _render_many(
        [plan], HitResult(allowed, [[used, reset, retry]], degraded), ietf=ietf, legacy=legacy
    )
    assert fast[0] == slow[0]
    assert repr(fast[1]) == repr(slow[1])
    assert fast[2:] == slow[2:]


def test_render_bytes_for_a_single_window() -> None:
    """The IETF and legacy fields for one window are exactly the documented bytes (L4)."""
    plan = Plan(RatePolicy.parse("read", "100/minute"), "rl")
    headers, info, violated, retry_after = render(
        [plan], HitResult(True, [[58.0, 29.2, 0.0]]), ietf=True, legacy=True
    )
    assert headers == [
        (b"x-ratelimit-limit", b"100"),
        (b"x-ratelimit-remaining", b"42"),
        (b"x-ratelimit-reset", b"30"),
        (b"ratelimit-policy", b'"read";q=100;w=60'),
        (b"ratelimit", b'"read";r=42;t=30'),
    ]
    assert (info.policy, info.remaining, violated, retry_after) == ("read", 42, [], 0)
