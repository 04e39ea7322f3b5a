"""RetryPolicy: the schedule, jitter, throttling, Retry-After clamping and 410 (W9)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.webhooks.retry import DEFAULT_SCHEDULE, RetryPolicy
from extapi_kit.webhooks.sender import AttemptResult


def _result(
    status: int | None = 500, error: str | None = None, retry_after: float | None = None
) -> AttemptResult:
    return AttemptResult(status=status, duration=0.01, error=error, retry_after=retry_after)


def test_default_schedule_without_jitter() -> None:
    """Without jitter the delays are exactly the Svix schedule; 8 attempts in all (W9)."""
    policy = RetryPolicy(jitter=0)
    delays = [policy.next_delay(n, _result()) for n in range(1, 9)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000, None]
    assert policy.max_attempts == len(DEFAULT_SCHEDULE) == 8
    assert sum(DEFAULT_SCHEDULE) == 99_305  # ~27.6 h from first to last attempt


def test_success_stops_retrying() -> None:
    """A 2xx answer ends the delivery (no next attempt)."""
    policy = RetryPolicy()
    assert policy.next_delay(1, _result(200)) is None
    assert policy.next_delay(3, _result(204)) is None


@pytest.mark.parametrize(
    "result",
    [
        _result(None, "timeout"),
        _result(None, "connection_refused"),
        _result(None, "dns_error"),
        _result(None, "ssrf_blocked"),
        _result(302, "redirect"),
        _result(400),
        _result(500),
        _result(200, "timeout"),
    ],
)
def test_failures_follow_the_schedule(result: AttemptResult) -> None:
    """Network errors, 3xx, 4xx and 5xx retry on the plain schedule (W9)."""
    assert RetryPolicy(jitter=0).next_delay(2, result) == 300


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_throttle_statuses_back_off_harder(status: int) -> None:
    """429/502/503/504 multiply the scheduled delay (W9)."""
    policy = RetryPolicy(jitter=0, throttle_multiplier=3)
    assert policy.next_delay(2, _result(status)) == 900


def test_retry_after_honoured_and_clamped() -> None:
    """Retry-After is a floor for the delay, clamped to max_retry_after (W9)."""
    policy = RetryPolicy(jitter=0, max_retry_after=3600)
    assert policy.next_delay(1, _result(429, retry_after=120)) == 120  # above 5 s x 2
    assert policy.next_delay(3, _result(429, retry_after=120)) == 3600  # 1800 x 2 wins
    assert policy.next_delay(1, _result(429, retry_after=10**9)) == 3600  # clamped
    assert policy.next_delay(1, _result(503, retry_after=-5)) == 10
    assert policy.next_delay(1, _result(500, retry_after=60)) == 60


def test_gone_disables_endpoint() -> None:
    """410 Gone disables the endpoint; other statuses and errors do not (W9)."""
    policy = RetryPolicy()
    assert policy.disables_endpoint(_result(410))
    for other in (_result(404), _result(500), _result(200), _result(None, "timeout")):
        assert not policy.disables_endpoint(other)


def test_jitter_with_injected_rng_is_reproducible() -> None:
    """An injected rng makes jittered delays reproducible and within ±jitter (W9)."""
    a = RetryPolicy(jitter=0.2, rng=random.Random(7))
    b = RetryPolicy(jitter=0.2, rng=random.Random(7))
    delays = [a.next_delay(n, _result()) for n in range(1, 8)]
    assert delays == [b.next_delay(n, _result()) for n in range(1, 8)]
    for delay, base in zip(delays, DEFAULT_SCHEDULE[1:], strict=True):
        assert delay is not None and base * 0.8 <= delay <= base * 1.2
    assert len({d / base for d, base in zip(delays, DEFAULT_SCHEDULE[1:], strict=True) if d}) > 1


@given(
    attempt=st.integers(1, 20),
    status=st.sampled_from([None, 302, 400, 410, 429, 500, 502, 503, 504]),
    retry_after=st.none() | st.floats(-10, 1e7, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_delay_bounds_property(
    attempt: int, status: int | None, retry_after: float | None, seed: int
) -> None:
    """Property: delays stay within jitter of the (throttled) schedule or at the clamped floor."""
    policy = RetryPolicy(jitter=0.1, max_retry_after=3600, rng=random.Random(seed))
    result = _result(status, None if status else "timeout", retry_after)
    delay = policy.next_delay(attempt, result)
    if attempt >= len(DEFAULT_SCHEDULE):
        assert delay is None
        return
    assert delay is not None
    base = DEFAULT_SCHEDULE[attempt] * (2 if status in (429, 502, 503, 504) else 1)
    floor = min(max(retry_after or 0.0, 0.0), 3600)
    assert delay >= max(base * 0.9, floor) - 1e-9
    assert delay <= max(base * 1.1, floor) + 1e-9


def test_custom_schedule_and_validation() -> None:
    """A custom schedule sets the attempt count; bad settings are configuration errors."""
    policy = RetryPolicy([0, 1, 2], jitter=0)
    assert policy.max_attempts == 3
    assert [policy.next_delay(n, _result()) for n in (1, 2, 3)] == [1, 2, None]
    with pytest.raises(ValueError):
        policy.next_delay(0, _result())
    for kwargs in ({"jitter": 1.0}, {"throttle_multiplier": 0.5}, {"max_retry_after": -1}):
        with pytest.raises(ConfigurationError):
            RetryPolicy(**kwargs)
    for schedule in ([], [5, -1]):
        with pytest.raises(ConfigurationError):
            RetryPolicy(schedule)
    assert "schedule" in repr(policy)
