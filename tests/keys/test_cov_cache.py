"""The verify path's in-process state: bounded positive cache and failure throttle (A4, A6, A7)."""

from __future__ import annotations

from extapi_kit.context import Principal
from extapi_kit.keys._cache import FailureThrottle, PositiveCache

KEY_OLD = "xk_live_k1_oldsecret"
KEY_NEW = "xk_live_k1_newsecret"


def test_positive_cache_is_bounded_and_never_holds_the_key() -> None:
    """L7/A10: past max_entries the oldest entry goes; the cache keys are MACs, not keys."""
    cache = PositiveCache(ttl=10, max_entries=2)
    for i in range(3):
        cache.put(cache.digest(f"xk_live_k{i}_s"), f"k{i}", Principal(key_id=f"k{i}"), 100.0)
    assert len(cache) == 2
    assert cache.get(cache.digest("xk_live_k0_s"), 0.0) is None
    assert cache.get(cache.digest("xk_live_k2_s"), 0.0) is not None
    assert "xk_live" not in repr(cache) and repr(cache) == "PositiveCache(ttl=10, entries=2)"


def test_rotated_key_old_and_new_secrets_are_both_revoked() -> None:
    """A6/A7: during rotation grace both secrets are cached; revoking the id drops both."""
    cache = PositiveCache(ttl=10, max_entries=2)
    p = Principal(key_id="k1")
    cache.put(cache.digest(KEY_OLD), "k1", p, 100.0)
    cache.put(cache.digest(KEY_NEW), "k1", p, 100.0)
    cache.put(cache.digest("xk_live_k2_s"), "k2", Principal(key_id="k2"), 100.0)  # evicts old
    assert cache.get(cache.digest(KEY_OLD), 0.0) is None
    assert cache.get(cache.digest(KEY_NEW), 0.0) is not None
    cache.invalidate("k1")
    assert cache.get(cache.digest(KEY_NEW), 0.0) is None
    assert cache.get(cache.digest("xk_live_k2_s"), 0.0) is not None


def test_failures_of_an_old_window_do_not_count_in_a_new_one() -> None:
    """A4: after the window passes, a new failure starts a fresh count (no lingering block)."""
    throttle = FailureThrottle(per_ip=3, per_key=3, window=60)
    for _ in range(3):
        throttle.record("198.51.100.7", None, 0.0)
    assert throttle.blocked("198.51.100.7", None, 1.0) == 59.0
    throttle.record("198.51.100.7", None, 61.0)
    throttle.record("198.51.100.7", None, 62.0)
    assert throttle.blocked("198.51.100.7", None, 63.0) is None
    assert throttle.blocked(None, "k1", 63.0) is None


def test_failure_throttle_table_is_bounded() -> None:
    """A4/L7: a flood from many addresses keeps at most max_entries counters in memory."""
    throttle = FailureThrottle(per_ip=1, per_key=1, window=60, max_entries=3)
    for i in range(10):
        throttle.record(f"203.0.113.{i}", None, 0.0)
    assert len(throttle._counts) == 3
    assert throttle.blocked("203.0.113.9", None, 1.0) is not None
    assert throttle.blocked("203.0.113.0", None, 1.0) is None
    assert repr(throttle) == "FailureThrottle(per_ip=1, per_key=1, window=60)"
