"""KeyService expiry bounds: absurd ``expires_in``/``expires_at`` refused before storing (M7)."""

from __future__ import annotations

import pytest

from extapi_kit._units import MAX_DURATION, MAX_TIMESTAMP
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.models import iso
from extapi_kit.keys.service import KeyService
from extapi_kit.testing import FakeClock
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0


def _service() -> KeyService:
    return KeyService("memory://", hasher=cheap_hasher(), clock=FakeClock(NOW))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expires_in": "99999999999999999d"},
        {"expires_in": "1e300"},
        {"expires_in": 1e300},
        {"expires_in": float("inf")},
        {"expires_in": 10**400},
        {"expires_at": 1e300},
        {"expires_at": float("nan")},
        {"expires_at": -1.0},
        {"expires_at": MAX_TIMESTAMP + 1},
    ],
)
async def test_create_and_update_refuse_absurd_expiries(kwargs: dict[str, object]) -> None:
    """M7: create()/update() with an unbounded expiry raise ConfigurationError and store nothing."""
    svc = _service()
    with pytest.raises(ConfigurationError, match=r"expir|duration"):
        await svc.create("poison", **kwargs)  # type: ignore[arg-type]
    assert (await svc.list())[0] == []
    rec, _ = await svc.create("target")
    with pytest.raises(ConfigurationError, match=r"expir|duration"):
        await svc.update(rec.id, **kwargs)  # type: ignore[arg-type]
    assert (await svc.get(rec.id)).expires_at is None


async def test_update_takes_expires_in_and_bounds_hold_at_the_edge() -> None:
    """M7: update(expires_in=...) sets now + duration; the largest allowed values still work."""
    svc = _service()
    rec, _ = await svc.create("k", expires_in=MAX_DURATION)
    assert rec.expires_at == NOW + MAX_DURATION
    assert (await svc.update(rec.id, expires_in="7d")).expires_at == NOW + 7 * 86400
    assert (await svc.update(rec.id, expires_at=MAX_TIMESTAMP)).expires_at == MAX_TIMESTAMP
    with pytest.raises(ConfigurationError, match="not both"):
        await svc.update(rec.id, expires_at=NOW, expires_in="1d")


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        (1e300, "9999-12-31T23:59:59Z"),
        (float("inf"), "9999-12-31T23:59:59Z"),
        (-1e300, "0001-01-01T00:00:00Z"),
        (float("nan"), None),
        (0.0, "1970-01-01T00:00:00Z"),
    ],
)
def test_iso_never_raises_on_stored_out_of_range_timestamps(ts: float, shown: str | None) -> None:
    """M7: a timestamp already stored out of range renders clamped, so listings never 500."""
    assert iso(ts) == shown
