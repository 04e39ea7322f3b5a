"""Cursor pagination, sorting and filtering helpers."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError, ProblemError
from extapi_kit.routing.pagination import (
    CursorCodec,
    ListParams,
    Page,
    keyset_sql,
    page_from_rows,
    paginate,
)

SECRET = "s" * 32
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_cursor_round_trip(state: dict[str, Any]) -> None:
    """Any JSON state survives encode/decode unchanged."""
    codec = CursorCodec(SECRET)
    assert codec.decode(codec.encode(state)) == state


@given(st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=4), st.data())
def test_tampered_cursor_is_rejected(state: dict[str, Any], data: st.DataObject) -> None:
    """Changing any character of a cursor (or signing with another secret) is a 400 problem."""
    codec = CursorCodec(SECRET)
    cursor = codec.encode(state)
    i = data.draw(st.integers(0, len(cursor) - 1))
    replacement = data.draw(st.sampled_from([ch for ch in "ABCabc019-_.=" if ch != cursor[i]]))
    forged = cursor[:i] + replacement + cursor[i + 1 :]
    with pytest.raises(ProblemError) as info:
        codec.decode(forged)
    assert info.value.problem.status == 400
    with pytest.raises(ProblemError):
        CursorCodec("t" * 32).decode(cursor)


@pytest.mark.parametrize("junk", ["", ".", "abc", "a.b.c", "!!!.???", "x" * 5000])
def test_garbage_cursors(junk: str) -> None:
    """Malformed cursors are a 400, never an exception of another kind."""
    with pytest.raises(ProblemError):
        CursorCodec(SECRET).decode(junk)


def test_short_secret_and_repr() -> None:
    """The secret must be long enough and never shows in repr."""
    with pytest.raises(ConfigurationError):
        CursorCodec("short")
    assert SECRET not in repr(CursorCodec(SECRET))


def test_list_params_forms() -> None:
    """sort=-f and sortField/sortDirection agree; undeclared fields and big limits are 422."""
    a = ListParams.from_query(
        {"sort": "-created_at", "limit": "5"}, sortable=["created_at", "name"]
    )
    b = ListParams.from_query(
        {"sortField": "created_at", "sortDirection": "desc", "limit": "5"},
        sortable=["created_at", "name"],
    )
    assert a == b and a.descending and a.limit == 5
    d = ListParams.from_query({"status": "open", "other": "x"}, sortable=["id"], filters=["status"])
    assert d.filters == {"status": "open"} and d.sort_field == "id" and d.limit == 20
    for bad in (
        {"sort": "password"},
        {"limit": "1000"},
        {"limit": "0"},
        {"limit": "x"},
        {"sortField": "id", "sortDirection": "up"},
    ):
        with pytest.raises(ProblemError) as info:
            ListParams.from_query(bad, sortable=["id"], max_limit=100)
        assert info.value.problem.status == 422


items_st = st.lists(
    st.fixed_dictionaries(
        {"score": st.integers(0, 5), "status": st.sampled_from(["open", "closed"])}
    ),
    max_size=40,
)


@given(items_st, st.integers(1, 7), st.booleans(), st.sampled_from([None, "open"]))
def test_following_cursors_yields_every_item_once(
    rows: list[dict[str, Any]], limit: int, desc: bool, status: str | None
) -> None:
    """Following next_cursor yields exactly the filtered items, in order, no short pages."""
    items = [dict(r, id=i) for i, r in enumerate(rows)]
    codec = CursorCodec(SECRET)
    query: dict[str, str] = {"limit": str(limit), "sort": ("-" if desc else "") + "score"}
    if status:
        query["status"] = status
    seen: list[int] = []
    while True:
        params = ListParams.from_query(query, sortable=["score", "id"], filters=["status"])
        page = paginate(items, params, codec)
        seen.extend(it["id"] for it in page.data)
        if not page.has_more:
            assert page.next_cursor is None
            break
        assert len(page.data) == limit and page.next_cursor
        query["cursor"] = page.next_cursor
    expected = sorted(
        (it for it in items if status is None or it["status"] == status),
        key=lambda it: (it["score"], it["id"]),
        reverse=desc,
    )
    assert seen == [it["id"] for it in expected]


def test_cursor_bound_to_its_query() -> None:
    """A cursor from one sort/filter combination is refused for another (400)."""
    codec = CursorCodec(SECRET)
    items = [{"id": i, "score": i} for i in range(10)]
    first = paginate(
        items, ListParams.from_query({"limit": "2", "sort": "score"}, sortable=["score"]), codec
    )
    assert first.next_cursor
    other = ListParams.from_query(
        {"limit": "2", "sort": "-score", "cursor": first.next_cursor}, sortable=["score"]
    )
    with pytest.raises(ProblemError):
        paginate(items, other, codec)


def test_keyset_sql_pages_through_sqlite() -> None:
    """keyset_sql + page_from_rows page a real SQLite table without overlap."""
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute('CREATE TABLE t ("id" INTEGER PRIMARY KEY, "score" INTEGER, "status" TEXT)')
    db.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [(i, i % 3, "open" if i % 2 else "closed") for i in range(20)],
    )
    codec = CursorCodec(SECRET)
    query = {"limit": "3", "sort": "-score", "status": "open"}
    seen: list[int] = []
    while True:
        params = ListParams.from_query(query, sortable=["score"], filters=["status"])
        sql, args = keyset_sql(params, codec)
        rows = [dict(r) for r in db.execute(f"SELECT * FROM t {sql}", args)]
        page = page_from_rows(rows, params, codec)
        seen.extend(r["id"] for r in page.data)
        if not page.has_more:
            break
        query["cursor"] = str(page.next_cursor)
    expected = sorted((i for i in range(20) if i % 2), key=lambda i: (i % 3, i), reverse=True)
    assert seen == expected
    db.close()


def test_page_envelope_shape() -> None:
    """The envelope serialises as {data, next_cursor, has_more}."""
    assert Page[int](data=[1]).model_dump() == {"data": [1], "next_cursor": None, "has_more": False}


def test_cursor_bound_to_its_route_and_key() -> None:
    """M8: a cursor made under one route (and key) is a 400 under another, even when the sort
    and filters match; the same binding pages on."""
    codec = CursorCodec(SECRET)
    items = [{"id": i, "score": i} for i in range(10)]

    def params(route: str, cursor: str | None = None) -> ListParams:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        return ListParams.from_query(query, sortable=["id"], route=route)

    first = paginate(items, params("GET /a|key1"), codec)
    assert first.next_cursor
    for other in ("GET /b|key1", "GET /a|key2", ""):
        with pytest.raises(ProblemError) as info:
            paginate(items, params(other, first.next_cursor), codec)
        assert info.value.problem.status == 400
    assert [
        it["id"] for it in paginate(items, params("GET /a|key1", first.next_cursor), codec).data
    ] == [2, 3]


@given(json_values, json_values, st.booleans())
def test_any_signed_cursor_content_is_a_page_or_a_400(v: Any, last_id: Any, desc: bool) -> None:
    """M8: whatever a validly signed cursor holds (a string where ids are ints, a list, null),
    paginate and keyset_sql answer a page or a 400 problem, never another exception."""
    codec = CursorCodec(SECRET)
    items = [{"id": i, "score": i % 3} for i in range(6)]
    query = {"limit": "2", "sort": ("-" if desc else "") + "score"}
    binding = ListParams.from_query(query, sortable=["score"]).binding()
    query["cursor"] = codec.encode({"v": v, "id": last_id, "b": binding})
    params = ListParams.from_query(query, sortable=["score"])
    try:
        paginate(items, params, codec)
    except ProblemError as exc:
        assert exc.problem.status == 400
    db = sqlite3.connect(":memory:")
    db.execute('CREATE TABLE t ("id" INTEGER PRIMARY KEY, "score" INTEGER)')
    try:
        sql, args = keyset_sql(params, codec)
        db.execute(f"SELECT * FROM t {sql}", args).fetchall()
    except ProblemError as exc:
        assert exc.problem.status == 400
    finally:
        db.close()


def test_cursor_of_another_type_is_400() -> None:
    """M8: a string-keyed cursor (a models list) on an int-keyed list is a 400, not a TypeError."""
    codec = CursorCodec(SECRET)
    models = [{"id": name} for name in ("flux", "mj6", "sdxl")]
    assets = [{"id": i} for i in range(5)]
    page = paginate(models, ListParams.from_query({"limit": "1"}), codec)
    assert page.next_cursor
    with pytest.raises(ProblemError) as info:
        paginate(assets, ListParams.from_query({"limit": "1", "cursor": page.next_cursor}), codec)
    assert info.value.problem.status == 400
