"""The audit writer's failure policy: spill when a sink fails, re-send when it is back, no loss."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.audit import AuditRecord, AuditWriter, MemorySink
from extapi_kit.audit.sink_redis import RedisSink
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.middleware.audit import AuditMiddleware
from tests.support.redis_server import RedisServer


def _lines(path: str) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _calls(mw: AuditMiddleware, tag: str, n: int) -> set[str]:
    ids = set()
    transport = httpx.ASGITransport(mw, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for i in range(n):
            r = await client.get(f"/{tag}/{i}", headers={"x-request-id": f"{tag}-{i}"})
            ids.add(r.headers["x-request-id"])
    return ids


@pytest.mark.anyio
async def test_sqlite_locked_mid_run_loses_nothing(tmp_path: Path) -> None:
    """SQLite held by another connection's exclusive transaction: records spill, then all land."""
    db = tmp_path / "audit.db"
    sink = SQLiteSink(str(db), busy_timeout=0.05)
    mw = AuditMiddleware(_ok, sink=sink, flush_interval=3600)
    before = await _calls(mw, "before", 20)
    await mw.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        during = await _calls(mw, "during", 30)
        await mw.flush()
        await mw.flush()  # a forced re-send attempt while still locked must not duplicate
        assert mw.writer.spilled >= 30
        spill = mw.writer.spill_paths[0]
        assert len(_lines(spill)) == 30
    finally:
        locker.execute("COMMIT")
        locker.close()
    after = await _calls(mw, "after", 10)
    await mw.flush()
    stored, _ = await sink.query(limit=1000)
    assert sorted(r.request_id for r in stored) == sorted(before | during | after)
    assert _lines(spill) == []
    assert mw.dropped == 0 and mw.writer.resent == 30
    await mw.aclose()
    await sink.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_stopped_mid_run_loses_nothing(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis killed mid-run: records spill to disk and are re-sent once a server is back."""
    sink = RedisSink(private_redis.url, stream="audit")
    mw = AuditMiddleware(_ok, sink=sink, flush_interval=3600, spill_path=str(tmp_path))
    first = await _calls(mw, "up", 10)
    await mw.flush()
    assert await sink.count() == 10 and first
    private_redis.kill()
    during = await _calls(mw, "down", 25)
    await mw.flush()
    assert mw.writer.spilled == 25
    # The restarted server has no persistence: only what was sent while it was down must arrive.
    private_redis.start()
    after = await _calls(mw, "back", 5)
    await mw.flush()
    stored, _ = await sink.query(limit=1000)
    assert sorted(r.request_id for r in stored) == sorted(during | after)
    assert mw.writer.resent == 25 and mw.dropped == 0
    await mw.aclose()
    await sink.aclose()


class _Flaky(MemorySink):
    """A memory sink that can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        if self.down:
            raise StoreUnavailableError("switched off")
        await super().write_batch(records)


def _records(n: int, tag: str, start: int = 0) -> list[AuditRecord]:
    return [
        AuditRecord(
            timestamp_us=1_800_000_000_000_000 + start + i,
            request_id=f"{tag}{i}",
            method="GET",
            path="/",
        )
        for i in range(n)
    ]


@pytest.mark.anyio
async def test_spill_left_at_shutdown_is_resent_by_the_next_writer(tmp_path: Path) -> None:
    """Records still spilled when a process stops are delivered by the next one (same spill dir)."""
    down = _Flaky()
    down.down = True
    w1 = AuditWriter([down], spill_dir=str(tmp_path))
    for rec in _records(7, "a"):
        w1.put(rec)
    await w1.aclose()
    lines = _lines(w1.spill_paths[0])
    assert [json.loads(line)["request_id"] for line in lines] == [f"a{i}" for i in range(7)]

    up = _Flaky()
    w2 = AuditWriter([up], spill_dir=str(tmp_path))
    w2.put(_records(1, "b", start=100)[0])
    await w2.flush()
    assert [r.request_id for r in up.records] == [*(f"a{i}" for i in range(7)), "b0"]
    await w2.aclose()


@pytest.mark.anyio
async def test_one_failing_sink_does_not_hold_back_the_others(tmp_path: Path) -> None:
    """With two sinks, the healthy one gets every batch while the other spills."""
    good, bad = MemorySink(), _Flaky()
    bad.down = True
    writer = AuditWriter([good, bad], spill_dir=str(tmp_path), batch_size=4)
    for rec in _records(10, "r"):
        writer.put(rec)
    await writer.flush()
    assert len(good) == 10 and len(bad) == 0 and writer.spilled == 10
    bad.down = False
    await writer.flush()
    assert [r.request_id for r in bad.records] == [r.request_id for r in good.records]
    await writer.aclose()


@pytest.mark.anyio
async def test_unwritable_spill_counts_records_as_dropped(tmp_path: Path) -> None:
    """If even the spill file cannot be written the loss is counted, never silent."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = _Flaky()
    bad.down = True
    writer = AuditWriter([bad], spill_dir=str(blocker / "sub"))
    for rec in _records(3, "x"):
        writer.put(rec)
    await writer.flush()
    assert writer.dropped == 3
    await writer.aclose()
