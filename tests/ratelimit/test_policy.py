"""Policy strings, path rules and the per-key override cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.ratelimit import RateLimitRule, RatePolicy, Window, parse_policy
from extapi_kit.ratelimit.policy import OverrideCache, compile_rules

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def test_parse_several_windows_sorted_by_length() -> None:
    """A policy string with several windows yields them shortest first, labelled by unit."""
    policy = RatePolicy.parse("read", "2000/hour;100/minute")
    assert policy.windows == (Window(100, 60, "minute"), Window(2000, 3600, "hour"))
    assert [policy.item_name(w) for w in policy.windows] == ["read-minute", "read-hour"]
    assert parse_policy("x", ["10 per 30 seconds"]).windows == (Window(10, 30, "30second"),)


@given(
    amount=st.integers(min_value=0, max_value=10**6),
    multiple=st.integers(min_value=1, max_value=100),
    unit=st.sampled_from(sorted(UNITS)),
)
def test_parse_round_trip(amount: int, multiple: int, unit: str) -> None:
    """Any valid 'N/M unit' string parses to N per M*unit seconds."""
    policy = RatePolicy.parse("p", f"{amount}/{multiple} {unit}")
    assert policy.windows[0].limit == amount
    assert policy.windows[0].seconds == multiple * UNITS[unit]


@pytest.mark.parametrize("bad", ["", "ten/minute", "5/fortnight", "5", "5/minute;;", 5])
def test_bad_rate_strings_raise_configuration_error(bad: object) -> None:
    """Malformed rate strings raise ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError):
        RatePolicy.parse("p", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", 'a"b', "a b", "x" * 65, "é"])
def test_bad_policy_names_rejected(name: str) -> None:
    """Policy names must be header-safe tokens (they are sent as sf-strings)."""
    with pytest.raises(ConfigurationError):
        RatePolicy.parse(name, "1/minute")


def test_duplicate_window_length_rejected() -> None:
    """Two windows of the same length in one policy are a configuration error."""
    with pytest.raises(ConfigurationError):
        RatePolicy.parse("p", "1/minute;5/60 seconds")


def test_rules_match_prefix_and_template_most_specific_first() -> None:
    """Prefix rules match the path and below; templates match one segment; longest wins."""
    rules = compile_rules(
        {
            "/api": "api",
            "/api/search": RateLimitRule("/api/search", rate_class="search", cost=3),
            "/items/{id}": 5,
        }
    )

    def first(path: str) -> RateLimitRule | None:
        return next((r.rule for r in rules if r.matches(path)), None)

    assert first("/api/search/deep") == RateLimitRule("/api/search", rate_class="search", cost=3)
    assert first("/api/other") == RateLimitRule("/api", rate_class="api")
    assert first("/apix") is None
    assert first("/items/42") == RateLimitRule("/items/{id}", cost=5)
    assert first("/items/42/sub") is None


@pytest.mark.parametrize(
    "rule",
    [
        lambda: RateLimitRule("nope"),
        lambda: RateLimitRule("/x", cost=-1),
        lambda: RateLimitRule("/x", limits="1/minute"),
        lambda: compile_rules({"/x": 1.5}),  # type: ignore[dict-item]
        lambda: compile_rules({"/x": True}),
        lambda: compile_rules(["/x"]),  # type: ignore[list-item]
    ],
)
def test_bad_rules_rejected(rule: object) -> None:
    """Invalid rules raise ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        rule()  # type: ignore[operator]


def test_override_cache_parses_once_and_tolerates_garbage() -> None:
    """Overrides are cached per string; an unparsable override yields None (default applies)."""
    cache = OverrideCache()
    first = cache.get("read", "5/minute")
    assert first is not None and first.windows[0].limit == 5
    assert cache.get("read", "5/minute") is first
    assert cache.get("read", "lots") is None
    assert cache.get("read", "7/minute") is not first
