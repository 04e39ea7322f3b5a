"""Key settings are validated where they enter the Python API: nothing is accepted and ignored."""

from __future__ import annotations

import math
from typing import Any

import pytest

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.service import KeyService
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio

# (setting, bad value, what the error must name)
BAD_SETTINGS: list[tuple[str, Any, str]] = [
    ("quota", {"monthly": "x"}, "quota.monthly"),
    ("quota", {"monthly": -5}, "quota.monthly"),
    ("quota", {"monthly": 1.5}, "quota.monthly"),
    ("quota", {"monthly": True}, "quota.monthly"),
    ("quota", {"daily": math.inf}, "quota.daily"),
    ("quota", {"daily": 2**64}, "quota.daily"),
    ("quota", {"hourly": 5}, "quota.hourly"),
    ("quota", "monthly=5", "quota"),
    ("rate_limits", {"read": "1/0 seconds"}, "rate_limits.read"),
    ("rate_limits", {"read": "5 per 0 minutes"}, "rate_limits.read"),
    ("rate_limits", {"read": "1/minute;2/minute"}, "rate_limits.read"),
    ("rate_limits", {"read": "10/99999999999 years"}, "rate_limits.read"),
    ("rate_limits", {"read": "99999999999999999999/minute"}, "rate_limits.read"),
    ("rate_limits", {"read": 5}, "rate_limits.read"),
    ("rate_limits", {"bad class!": "1/minute"}, "rate_limits"),
    ("rate_limits", "read=1/minute", "rate_limits"),
    ("allowed_cidrs", ["10.0.0.0/33"], "allowed_cidrs"),
    ("allowed_cidrs", [7], "allowed_cidrs"),
    ("allowed_cidrs", 7, "allowed_cidrs"),
    ("scopes", ["has space"], "scope"),
    ("scopes", [None], "scope"),
    ("scopes", 5, "scopes"),
    ("grants", {"projects": []}, "grants.projects"),
    ("grants", {"projects": 7}, "grants.projects"),
    ("grants", ["projects"], "grants"),
    ("metadata", {"x": math.nan}, "metadata"),
    ("metadata", {"x": math.inf}, "metadata"),
    ("metadata", [1], "metadata"),
]


def _service() -> KeyService:
    return KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)


@pytest.mark.parametrize(("setting", "value", "field"), BAD_SETTINGS)
async def test_bad_key_settings_are_refused_on_create_and_update(
    setting: str, value: Any, field: str
) -> None:
    """M10: KeyService.create and update refuse a setting that would be stored but ignored (or
    crash later) with a ConfigurationError naming the field, and store nothing."""
    svc = _service()
    try:
        with pytest.raises(ConfigurationError) as info:
            await svc.create("k", **{setting: value})
        assert field in str(info.value)
        assert (await svc.list())[0] == []
        record, _ = await svc.create("k")
        with pytest.raises(ConfigurationError) as info:
            await svc.update(record.id, **{setting: value})
        assert field in str(info.value)
        assert await svc.get(record.id) == record
    finally:
        await svc.aclose()


async def test_good_key_settings_are_kept_as_given() -> None:
    """M10: valid quotas, rate limits, networks and grants are stored as given."""
    svc = _service()
    try:
        record, _ = await svc.create(
            "k",
            quota={"monthly": 10_000, "daily": 0},
            rate_limits={"read": "500/minute;2000/hour", "write": "10 per 30 seconds"},
            allowed_cidrs=["10.0.0.0/8", "2001:db8::/32"],
            grants={"projects": ["7", "9"]},
            scopes="projects:read,projects:*",
        )
        assert record.quota == {"monthly": 10_000, "daily": 0}
        assert record.rate_limits == {"read": "500/minute;2000/hour", "write": "10 per 30 seconds"}
        updated = await svc.update(record.id, quota=None, rate_limits=None)
        assert updated.quota == {} and updated.rate_limits == {}
    finally:
        await svc.aclose()
