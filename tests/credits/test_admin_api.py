"""The admin credits routes: show, set, top up, clear; admin scope only; every change logged."""

from __future__ import annotations

import pytest

from extapi_kit.credits import CreditLedger
from tests.admin.conftest import API, admin_setup

pytestmark = pytest.mark.anyio


async def test_top_up_and_show_with_the_change_log() -> None:
    """PUT sets, POST /add tops up, GET shows the balance and who changed it and why."""
    ledger = CreditLedger()
    async with admin_setup(credits=ledger) as a:
        record, _ = await a.keys.create("partner", owner="acme")
        base = f"{API}/keys/{record.id}/credits"
        empty = await a.client.get(base, headers=a.h)
        assert empty.status_code == 200
        assert empty.json() == {
            "scope": "key",
            "id": record.id,
            "metered": False,
            "remaining": None,
            "history": [],
        }
        put = await a.client.put(base, json={"amount": 100, "reason": "order 17"}, headers=a.h)
        assert put.status_code == 200 and put.json()["remaining"] == 100
        add = await a.client.post(f"{base}/add", json={"amount": 25}, headers=a.h)
        assert add.json()["remaining"] == 125
        history = add.json()["history"]
        assert [(h["action"], h["before"], h["after"], h["actor"]) for h in history] == [
            ("add", 100, 125, a.admin_id),
            ("set", None, 100, a.admin_id),
        ]
        assert history[1]["reason"] == "order 17"
        owner = await a.client.post(
            f"{API}/owners/acme/credits/add", json={"amount": 7}, headers=a.h
        )
        assert owner.json()["scope"] == "owner" and owner.json()["remaining"] == 7
        cleared = await a.client.delete(base, headers=a.h)
        assert cleared.json()["metered"] is False
        assert await ledger.balance(key_id=record.id) is None


async def test_credits_routes_refuse_bad_input_and_unknown_keys() -> None:
    """A negative balance is a 422, an unknown key a 404, a zero add a 422 (nothing changes)."""
    ledger = CreditLedger()
    async with admin_setup(credits=ledger) as a:
        record, _ = await a.keys.create("partner")
        base = f"{API}/keys/{record.id}/credits"
        negative = await a.client.put(base, json={"amount": -1}, headers=a.h)
        zero = await a.client.post(f"{base}/add", json={"amount": 0}, headers=a.h)
        unknown = await a.client.put(f"{API}/keys/nope/credits", json={"amount": 1}, headers=a.h)
        assert [negative.status_code, zero.status_code, unknown.status_code] == [422, 422, 404]
        assert await ledger.balance(key_id=record.id) is None


async def test_only_admin_keys_can_top_up() -> None:
    """K9: a partner key (even with '*') cannot give itself credits: 403, balance unchanged."""
    ledger = CreditLedger()
    async with admin_setup(credits=ledger) as a:
        record, secret = await a.keys.create("partner", scopes=["*"])
        await ledger.set(1, key_id=record.id)
        r = await a.client.post(
            f"{API}/keys/{record.id}/credits/add",
            json={"amount": 1000},
            headers={"X-API-Key": secret},
        )
        assert r.status_code == 403
        assert await ledger.balance(key_id=record.id) == 1
        assert [e.action for e in await ledger.history(key_id=record.id)] == ["set"]
