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
    assert repr(throttle) == "FailureThrottle(per_ip=1, per_key=1, key_budget=20, window=60)"


def test_attempts_in_flight_count_and_only_refusals_become_failures() -> None:
    """A4/A15: attempts in flight count toward the limits; only a refused one stays counted."""
    throttle = FailureThrottle(per_ip=2, per_key=2, key_budget=2, window=60)
    throttle.begin("198.51.100.7", "k1")
    throttle.begin("198.51.100.7", "k1")
    assert throttle.blocked("198.51.100.7", "k1", 0.0) == 1.0  # two in flight, none failed yet
    throttle.end("198.51.100.7", "k1", 0.0, failed=False, hashed=True)  # e.g. a store error
    throttle.end("198.51.100.7", "k1", 0.0, failed=False, hashed=False)
    assert throttle._counts == {} and throttle._pending == {}
    throttle.begin("198.51.100.7", None)
    throttle.end("198.51.100.7", None, 0.0, failed=True, hashed=False)  # unknown id: IP only
    assert list(throttle._counts) == ["i198.51.100.7"]


def test_spent_key_budget_rations_hash_work_to_clean_sources() -> None:
    """A16: past the key id's budget a clean source gets one attempt at a time, a failing none."""
    throttle = FailureThrottle(per_ip=50, per_key=20, key_budget=2, window=60)
    throttle.record("203.0.113.1", "k1", 0.0)
    throttle.record("203.0.113.2", "k1", 0.0)
    assert throttle.blocked("203.0.113.1", "k1", 10.0) == 50.0  # its own failure, 50 s left
    assert throttle.blocked("192.0.2.9", "k1", 10.0) is None  # clean source
    throttle.begin("192.0.2.9", "k1")
    assert throttle.blocked("192.0.2.9", "k1", 10.0) == 1.0  # one at a time while rationed
    assert throttle.blocked("192.0.2.9", "k2", 10.0) is None  # other key ids are not rationed
    throttle.end("192.0.2.9", "k1", 11.0, failed=True, hashed=True)
    assert throttle.blocked("192.0.2.9", "k1", 12.0) == 59.0  # now a failing source
    assert throttle.blocked("203.0.113.1", "k1", 61.0) is None  # a new window: budget anew


def test_sources_group_ipv6_by_prefix_and_unmap_ipv4() -> None:
    """A16: IPv6 counts per /64, IPv4-mapped IPv6 as its IPv4, unknown text and None as is."""
    throttle = FailureThrottle(per_ip=1, per_key=1, window=60)
    throttle.record("2001:db8:0:1::1", None, 0.0)
    assert throttle.blocked("2001:db8:0:1:ffff::2", None, 1.0) is not None
    assert throttle.blocked("2001:db8:0:2::1", None, 1.0) is None
    throttle.record("::ffff:203.0.113.5", None, 0.0)
    assert throttle.blocked("203.0.113.5", None, 1.0) is not None
    throttle.record("fe80::1%eth0", None, 0.0)
    assert throttle.blocked("fe80::1%eth0", None, 1.0) is not None
    throttle.record(None, None, 0.0)
    assert throttle.blocked(None, None, 1.0) is not None
