"""Audit sink contract on memory, SQLite, Redis, PostgreSQL: filters, paging, prune, dedupe."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extapi_kit.audit import AuditRecord, AuditSink, MemorySink, audit_store_from_url
from extapi_kit.audit.record import new_record_id
from extapi_kit.audit.sink_redis import RedisSink
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.exceptions import ConfigurationError, InvalidCursorError
from extapi_kit.testing import FakeClock

T0 = 1_800_000_000_000_000  # epoch microseconds
KEYS = ["key-a", "key-b", None]
ROUTES = ["/items/{id}", "/users", "/health"]
METHODS = ["GET", "POST"]
STATUSES = [200, 401, 429]


def _rec(i: int, ts_us: int, key: str | None, route: str, method: str, status: int) -> AuditRecord:
    return AuditRecord(
        timestamp_us=ts_us,
        request_id=f"r{i}",
        method=method,
        path=route,
        route=route,
        status=status,
        key_id=key,
        id=new_record_id(),
    )


def _corpus(n: int = 60) -> list[AuditRecord]:
    return [
        _rec(
            i,
            T0 + i * 1_000_000,
            KEYS[i % 3],
            ROUTES[i % 3 if i % 2 else (i // 2) % 3],
            METHODS[i % 2],
            STATUSES[i % 3],
        )
        for i in range(n)
    ]


@pytest.fixture
async def sink(any_contract_store_url: str) -> AsyncIterator[AuditSink]:
    clock = FakeClock(T0 / 1_000_000 + 100)
    s = audit_store_from_url(any_contract_store_url, clock=clock)
    if isinstance(s, RedisSink):
        s.stream = f"audit-test-{uuid.uuid4().hex}"
    try:
        yield s
    finally:
        await s.aclose()


async def _all_pages(s: AuditSink, limit: int, **filters: object) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = await s.query(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        assert len(page) <= limit
        out.extend(page)
        if cursor is None:
            return out


def _brute(records: list[AuditRecord], **f: object) -> list[str]:
    since, until = f.get("since"), f.get("until")
    keep = [
        r
        for r in records
        if (f.get("key_id") is None or r.key_id == f["key_id"])
        and (f.get("route") is None or r.route == f["route"])
        and (f.get("method") is None or r.method == f["method"])
        and (f.get("status") is None or r.status == f["status"])
        and (since is None or r.timestamp_us >= float(since) * 1e6)  # type: ignore[arg-type]
        and (until is None or r.timestamp_us < float(until) * 1e6)  # type: ignore[arg-type]
    ]
    order = {id(r): i for i, r in enumerate(records)}
    keep.sort(key=lambda r: (r.timestamp_us, order[id(r)]), reverse=True)
    return [r.request_id for r in keep]


@pytest.mark.anyio
async def test_query_filters_and_pagination_match_brute_force(sink: AuditSink) -> None:
    """Every filter, alone and combined, pages newest first to exactly the matching records."""
    records = _corpus()
    await sink.write_batch(records[:25])
    await sink.write_batch(records[25:])
    since = datetime.fromtimestamp((T0 + 10_000_000) / 1e6, tz=UTC)
    cases: list[dict[str, object]] = [
        {},
        {"key_id": "key-a"},
        {"route": "/users"},
        {"method": "post"},
        {"status": 429},
        {"since": since, "until": (T0 + 40_000_000) / 1e6},
        {"key_id": "key-b", "route": "/items/{id}", "since": (T0 + 5_000_000) / 1e6},
    ]
    for filters in cases:
        for limit in (1, 7, 100):
            got = [r.request_id for r in await _all_pages(sink, limit, **filters)]
            brute = {**filters}
            if isinstance(brute.get("since"), datetime):
                brute["since"] = since.timestamp()
            if isinstance(brute.get("method"), str):
                brute["method"] = str(brute["method"]).upper()
            assert got == _brute(records, **brute), (filters, limit)


@pytest.mark.anyio
async def test_records_round_trip_through_the_sink(sink: AuditSink) -> None:
    """A stored record comes back equal, rate-limit, scopes and extra included."""
    rec = _rec(1, T0, "key-a", "/users", "GET", 200)
    rec.scopes = ("users:read",)
    rec.rate_limit = {"policy": "p", "remaining": 3}
    rec.extra = {"tier": "gold"}
    await sink.write_batch([rec])
    page, cursor = await sink.query()
    assert page == [rec] and cursor is None


def _local_sink(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AuditSink:
    clock = FakeClock(T0 / 1_000_000 + 100)
    if kind == "postgresql":
        return audit_store_from_url(str(request.getfixturevalue("pg_url")), clock=clock)
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/local.db"
    return audit_store_from_url(url, clock=clock)


LOCAL_KINDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# Redis prunes by stream id (arrival time, see test_redis_stream_is_trimmed_by_length_and_age)
# and cannot de-duplicate (documented), so these two run on memory, SQLite and PostgreSQL.
@pytest.mark.parametrize("kind", LOCAL_KINDS)
@pytest.mark.anyio
async def test_prune_deletes_only_older_records(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """prune(older_than) removes exactly the records before the cut-off."""
    sink = _local_sink(kind, tmp_path, request)
    records = _corpus(20)
    await sink.write_batch(records)
    # The sink clock is T0 + 100 s, so an age of 90 s cuts at T0 + 10 s.
    assert await sink.prune(timedelta(seconds=90)) == 10
    left = await _all_pages(sink, 50)
    assert sorted(r.request_id for r in left) == sorted(f"r{i}" for i in range(10, 20))
    await sink.aclose()


@pytest.mark.parametrize("kind", LOCAL_KINDS)
@pytest.mark.anyio
async def test_resent_batch_is_not_duplicated(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Writing the same records twice (a re-sent spill) stores them once (memory, SQLite,
    PostgreSQL)."""
    s = _local_sink(kind, tmp_path, request)
    records = _corpus(10)
    await s.write_batch(records)
    await s.write_batch(records[5:])
    assert len(await _all_pages(s, 100)) == 10
    await s.aclose()


@pytest.mark.anyio
async def test_bad_query_arguments_are_configuration_errors() -> None:
    """An out-of-range limit or a forged cursor raises ConfigurationError."""
    s = MemorySink()
    with pytest.raises(ConfigurationError):
        await s.query(limit=0)
    with pytest.raises(ConfigurationError):
        await s.query(cursor="not-a-cursor")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "cursor",
    ["x", "-1", "1.5.6", "[]", "\u00b2.1", "9" * 30 + ".1", "1-" + "9" * 30, "\x1b[2J", "1 .5"],
)
async def test_malformed_cursor_is_invalid_cursor_error_on_every_sink(
    sink: AuditSink, cursor: str
) -> None:
    """M9: a malformed cursor raises InvalidCursorError from every sink's query, Redis included
    (never a backend error), and so does a cursor in another sink's format."""
    await sink.write_batch(_corpus(3))
    with pytest.raises(InvalidCursorError):
        await sink.query(cursor=cursor)
    foreign = "1.5" if isinstance(sink, RedisSink) else "1-5"
    with pytest.raises(InvalidCursorError):
        await sink.query(cursor=foreign)
    page, nxt = await sink.query(limit=2, cursor="")
    assert len(page) == 2 and nxt is not None
    assert len((await sink.query(limit=2, cursor=nxt))[0]) == 1


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_stream_is_trimmed_by_length_and_age(redis_url: str) -> None:
    """MAXLEN~ caps the stream; max_age trims by arrival time; prune trims by stream id."""
    clock = FakeClock()
    s = RedisSink(redis_url, stream="audit-trim", maxlen=None, max_age=3600, clock=clock)
    await s.write_batch(_corpus(300))
    assert await s.count() == 300
    assert await s.prune(timedelta(hours=1)) == 0
    clock.advance(7200)
    assert await s.prune(timedelta(hours=1)) == 300
    capped = RedisSink(f"{redis_url}?stream=audit-cap&maxlen=100")
    for _ in range(10):
        await capped.write_batch(_corpus(100))
    assert await capped.count() < 1000
    await s.aclose()
    await capped.aclose()


KEY = st.sampled_from(KEYS)
RECORDS = st.lists(
    st.tuples(
        st.integers(0, 50),
        KEY,
        st.sampled_from(ROUTES),
        st.sampled_from(METHODS),
        st.sampled_from(STATUSES),
    ),
    max_size=40,
)
FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "key_id": st.sampled_from(["key-a", "key-b"]),
        "route": st.sampled_from(ROUTES),
        "method": st.sampled_from(METHODS),
        "status": st.sampled_from(STATUSES),
        "since": st.integers(0, 50).map(lambda s: T0 / 1e6 + s),
        "until": st.integers(0, 50).map(lambda s: T0 / 1e6 + s),
    },
)


def _build(spec: list[tuple[int, str | None, str, str, int]], sort: bool) -> list[AuditRecord]:
    recs = [_rec(i, T0 + t * 1_000_000, k, r, m, s) for i, (t, k, r, m, s) in enumerate(spec)]
    return sorted(recs, key=lambda r: r.timestamp_us) if sort else recs


async def _check(
    sink: AuditSink, records: list[AuditRecord], filters: dict[str, object], limit: int
) -> None:
    if records:
        await sink.write_batch(records)
    got = [r.request_id for r in await _all_pages(sink, limit, **filters)]
    assert got == _brute(records, **filters)


@given(spec=RECORDS, filters=FILTERS, limit=st.integers(1, 12))
def test_memory_and_sqlite_queries_equal_brute_force(
    spec: list[tuple[int, str | None, str, str, int]], filters: dict[str, object], limit: int
) -> None:
    """Hypothesis: paginated queries on memory and SQLite return exactly the brute-force match."""
    records = _build(spec, sort=False)

    async def run() -> None:
        await _check(MemorySink(), records, filters, limit)
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = SQLiteSink(f"{tmp}/a.db")
            await _check(sqlite, records, filters, limit)
            await sqlite.aclose()

    asyncio.run(run())


@pytest.mark.redis
@settings(max_examples=25)
@given(spec=RECORDS, filters=FILTERS, limit=st.integers(1, 12))
def test_redis_queries_equal_brute_force(
    redis_server_url: str,
    spec: list[tuple[int, str | None, str, str, int]],
    filters: dict[str, object],
    limit: int,
) -> None:
    """Hypothesis: paginated queries on Redis (arrival = time order) equal the brute force."""
    records = _build(spec, sort=True)

    async def run() -> None:
        sink = RedisSink(redis_server_url, stream=f"audit-h-{uuid.uuid4().hex}")
        await _check(sink, records, filters, limit)
        await sink.aclose()

    asyncio.run(run())


@pytest.mark.anyio
async def test_memory_sink_is_bounded() -> None:
    """memory:// keeps at most maxlen records (default 100,000), dropping the oldest."""
    s = audit_store_from_url("memory://?maxlen=5")
    assert isinstance(s, MemorySink)
    await s.write_batch(_corpus(8))
    assert [r.request_id for r in s.records] == [f"r{i}" for i in range(3, 8)]
    assert MemorySink()._maxlen == 100_000
    with pytest.raises(ConfigurationError):
        audit_store_from_url("memory://?maxlen=lots")
