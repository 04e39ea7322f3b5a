"""The credit store contract on every backend: memory, SQLite, Redis (+ Cluster), PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from extapi_kit.credits.store import CreditStore
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores import store_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(credit_url: str) -> AsyncIterator[CreditStore]:
    import extapi_kit.credits  # noqa: F401 - registers the "credits" store kind

    s: CreditStore = store_from_url("credits", credit_url)
    try:
        yield s
    finally:
        await s.aclose()


async def _set(store: CreditStore, subject: str, n: int) -> None:
    await store.change(subject, action="set", amount=n, actor="t", reason=None, at=1.0)


async def test_unmetered_subjects_never_refuse(store: CreditStore) -> None:
    """A subject without a balance is not metered: the spend admits and reports None."""
    spend = await store.spend(["k:none"], 5)
    assert (spend.allowed, spend.balances, spend.exhausted) == (True, [None], [False])
    assert not spend.metered
    assert await store.get("k:none") is None


async def test_spend_charges_until_empty_and_marks_once(store: CreditStore) -> None:
    """A balance of 3 pays three requests; the one reaching 0 alone sets the exhausted mark."""
    await _set(store, "k:a", 3)
    results = [await store.spend(["k:a"], 1) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.balances[0] for r in results] == [2, 1, 0, 0, 0]
    assert [r.exhausted[0] for r in results] == [False, False, True, False, False]
    assert await store.get("k:a") == 0


async def test_refusal_with_credits_left_marks_once(store: CreditStore) -> None:
    """A balance too small for the cost refuses without charging and marks exhausted once."""
    await _set(store, "k:a", 3)
    first = await store.spend(["k:a"], 5)
    second = await store.spend(["k:a"], 5)
    assert (first.allowed, first.balances, first.exhausted) == (False, [3], [True])
    assert (second.allowed, second.exhausted) == (False, [False])
    assert await store.get("k:a") == 3


async def test_spend_is_all_or_nothing_over_key_and_owner(store: CreditStore) -> None:
    """When the owner cannot pay, the key is not charged either (and vice versa)."""
    await _set(store, "k:a", 10)
    await _set(store, "o:acme", 1)
    ok = await store.spend(["k:a", "o:acme"], 1)
    assert (ok.allowed, ok.balances) == (True, [9, 0])
    refused = await store.spend(["k:a", "o:acme"], 1)
    assert (refused.allowed, refused.balances) == (False, [9, 0])
    assert await store.get("k:a") == 9
    await _set(store, "o:acme", 100)
    await _set(store, "k:a", 0)
    refused = await store.spend(["k:a", "o:acme"], 1)
    assert refused.allowed is False
    assert await store.get("o:acme") == 100


async def test_top_up_rearms_the_exhausted_mark(store: CreditStore) -> None:
    """After a top-up, the next time the balance runs dry marks exhausted again."""
    await _set(store, "k:a", 1)
    assert (await store.spend(["k:a"], 1)).exhausted == [True]
    entry = await store.change("k:a", action="add", amount=1, actor="t", reason="r", at=2.0)
    assert (entry.before, entry.after) == (0, 1)
    assert (await store.spend(["k:a"], 1)).exhausted == [True]


async def test_changes_are_logged_newest_first(store: CreditStore) -> None:
    """set/add/clear each leave an entry with before/after, actor and reason."""
    await store.change("o:acme", action="add", amount=5, actor="cli", reason="trial", at=1.0)
    await store.change("o:acme", action="add", amount=-9, actor="cli", reason=None, at=2.0)
    await store.change("o:acme", action="set", amount=40, actor="adm", reason="paid", at=3.0)
    await store.change("o:acme", action="clear", amount=0, actor="adm", reason=None, at=4.0)
    assert await store.get("o:acme") is None
    log = await store.history("o:acme", 10)
    assert [(e.action, e.amount, e.before, e.after, e.actor) for e in log] == [
        ("clear", 0, 40, None, "adm"),
        ("set", 40, 0, 40, "adm"),
        ("add", -9, 5, 0, "cli"),
        ("add", 5, None, 5, "cli"),
    ]
    assert log[1].reason == "paid"
    assert [e.at for e in await store.history("o:acme", 2)] == [4.0, 3.0]


async def test_invalid_changes_are_refused(store: CreditStore) -> None:
    """A negative balance, a zero add or an unknown action is a ConfigurationError."""
    for action, amount in (("set", -1), ("add", 0), ("drop", 1)):
        with pytest.raises(ConfigurationError):
            await store.change("k:a", action=action, amount=amount, actor="t", reason=None, at=1)


async def test_concurrent_spends_never_overdraw(store: CreditStore) -> None:
    """K5: 60 concurrent spends on a balance of 25 admit exactly 25 (one process)."""
    await _set(store, "k:hot", 25)
    results = await asyncio.gather(*(store.spend(["k:hot"], 1) for _ in range(60)))
    assert sum(r.allowed for r in results) == 25
    assert sum(m for r in results for m in r.exhausted) == 1
    assert await store.get("k:hot") == 0
