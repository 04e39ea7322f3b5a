"""Admin key routes and absurd expiries: 422 before storing, listings survive old bad rows (M7)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from extapi_kit.keys.models import KeyRecord
from tests.admin.conftest import API, Admin

pytestmark = pytest.mark.anyio

ABSURD: list[dict[str, Any]] = [
    {"expires_in": "99999999999999999d"},
    {"expires_in": "1e300"},
    {"expires_in": 1e300},
    {"expires_in": "nan"},
    {"expires_in": "9" * 400 + "s"},
    {"expires_at": "9999-12-31T23:59:59-12:00"},
    {"expires_at": "0001-01-01T00:00:00+14:00"},
]


@pytest.mark.parametrize("expiry", ABSURD)
async def test_absurd_expiry_is_a_422_and_nothing_is_stored(
    admin: Admin, expiry: dict[str, Any]
) -> None:
    """M7: POST /keys and PATCH /keys/{id} with an absurd expiry answer a field-level 422
    problem and store nothing; the key list and the key stay readable."""
    c, h = admin.client, admin.h
    r = await c.post(f"{API}/keys", json={"name": "poison", **expiry}, headers=h)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    field = next(iter(expiry))
    assert [e["loc"] for e in r.json()["errors"]] == [["body", field]]
    listed = await c.get(f"{API}/keys", headers=h)
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()["data"]] == [admin.admin_id]

    target, _ = await admin.keys.create("target")
    r = await c.patch(f"{API}/keys/{target.id}", json=expiry, headers=h)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == [["body", field]]
    assert (await admin.keys.get(target.id)).expires_at is None


async def test_patch_accepts_a_bounded_expires_in(admin: Admin) -> None:
    """M7: PATCH /keys/{id} takes a relative ``expires_in`` too, within the bound."""
    target, _ = await admin.keys.create("target")
    r = await admin.client.patch(
        f"{API}/keys/{target.id}", json={"expires_in": "30d"}, headers=admin.h
    )
    assert r.status_code == 200, r.text
    stored = (await admin.keys.get(target.id)).expires_at
    assert stored is not None and abs(stored - (time.time() + 30 * 86400)) < 60


@pytest.mark.parametrize("stored", [1e300, float("inf"), float("nan"), -1e300])
async def test_a_record_already_stored_with_an_absurd_expiry_does_not_break_listing(
    admin: Admin, stored: float
) -> None:
    """M7: a record written before the bound (expires_at 1e300, inf, NaN) lists and shows as
    200, so the console's key table keeps working."""
    good, _ = await admin.keys.create("good")
    poisoned = KeyRecord(
        id="poisoned0000000000000000",
        display_prefix="xk_live_poisoned0000000000000000",
        env="live",
        name="old",
        hash="argon2id$x",
        created_at=time.time(),
        updated_at=time.time(),
        expires_at=stored,
    )
    await admin.keys.store.create(poisoned)
    r = await admin.client.get(f"{API}/keys", headers=admin.h)
    assert r.status_code == 200, r.text
    assert {k["id"] for k in r.json()["data"]} == {admin.admin_id, good.id, poisoned.id}
    shown = await admin.client.get(f"{API}/keys/{poisoned.id}", headers=admin.h)
    assert shown.status_code == 200, shown.text
