"""The leak report store contract, on every backend: insert-if-absent, get, newest-first pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from extapi_kit.exceptions import ConfigurationError, InvalidCursorError
from extapi_kit.keys.leaks import LeakReport, LeakReportStore, leak_store_from_url, report_id

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[LeakReportStore]:
    s = leak_store_from_url(any_contract_store_url)
    yield s
    await s.aclose()


def report(key_id: str, url: str, at: float, owner: str | None = "acme") -> LeakReport:
    return LeakReport(
        id=report_id(key_id, url, "content"),
        key_id=key_id,
        display_prefix=f"xk_live_{key_id}",
        owner=owner,
        url=url,
        source="content",
        token_type="extapi_api_key",
        reporter="github",
        action="revoked",
        reported_at=at,
    )


async def test_add_is_insert_if_absent_even_when_concurrent(store: LeakReportStore) -> None:
    """K15: of concurrent adds of one report exactly one inserts (the one that acts and
    notifies); get returns it as stored."""
    r = report("k" * 22, "https://github.com/a", 100.0)
    results = await asyncio.gather(*(store.add(r) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await store.get(r.id) == r
    assert await store.get("lk_missing") is None
    assert await store.ping()


async def test_pages_newest_first_with_filters(store: LeakReportStore) -> None:
    """Listing is newest first, pages by cursor without gaps or repeats (ties included), and
    filters by key id and owner."""
    made = [
        report(f"{i % 3:0>22}", f"https://x/{i}", 100.0 + i // 2, f"o{i % 2}") for i in range(9)
    ]
    for r in made:
        assert await store.add(r)
    seen: list[LeakReport] = []
    cursor = None
    while True:
        page, cursor = await store.list(limit=2, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    assert seen == sorted(made, key=lambda r: (r.reported_at, r.id), reverse=True)
    by_key, _ = await store.list(key_id=f"{1:0>22}")
    assert {r.id for r in by_key} == {r.id for r in made if r.key_id == f"{1:0>22}"}
    by_owner, _ = await store.list(owner="o1", limit=100)
    assert {r.id for r in by_owner} == {r.id for r in made if r.owner == "o1"}
    with pytest.raises(InvalidCursorError):
        await store.list(cursor="garbage")
    with pytest.raises(ConfigurationError):
        await store.list(limit=0)
