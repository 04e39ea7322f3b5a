"""Spill files and sink failure paths: torn lines, atomic rewrite, sync import, Redis faults."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from extapi_kit.audit.record import AuditRecord, new_record_id
from extapi_kit.audit.sink_redis import RedisSink
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.audit.spill import SpillFile
from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError

pytestmark = pytest.mark.anyio


def _rec(i: int) -> AuditRecord:
    return AuditRecord(
        timestamp_us=1_700_000_000_000_000 + i,
        request_id=f"r{i}",
        method="GET",
        path=f"/items/{i}",
        status=200,
        id=new_record_id(),
    )


def test_spill_skips_torn_and_corrupt_lines(tmp_path: Path) -> None:
    """W8-style crash safety: a torn last line or garbage is skipped; the good records remain."""
    spill = SpillFile(str(tmp_path / "deep" / "audit.jsonl"))
    assert spill.read() == [] and not spill.has_records()
    spill.append([_rec(1), _rec(2)])
    with open(spill.path, "a", encoding="utf-8") as fh:
        fh.write('["not", "a", "record"]\n{"timestamp_us": 5, "request_id": "torn')
    assert [r.request_id for r in spill.read()] == ["r1", "r2"]
    assert repr(spill) == f"SpillFile({spill.path!r})"


def test_spill_replace_keeps_only_what_is_left(tmp_path: Path) -> None:
    """After a partial re-send the file holds exactly the unsent records; none left = no file."""
    spill = SpillFile(str(tmp_path / "audit.jsonl"))
    spill.append([_rec(1), _rec(2), _rec(3)])
    spill.replace([_rec(3)])
    assert [r.request_id for r in spill.read()] == ["r3"]
    assert not Path(spill.path + ".tmp").exists()
    spill.replace([])
    assert not spill.has_records() and not Path(spill.path).exists()
    spill.replace([])  # already gone: still fine


async def test_sqlite_sink_sync_import_and_closed_ping(tmp_path: Path) -> None:
    """write_batch_sync (CLI imports) stores records; a closed sink answers ping False."""
    sink = SQLiteSink(str(tmp_path / "audit.db"))
    sink.write_batch_sync([_rec(1), _rec(2)])
    assert await sink.count() == 2
    assert await sink.ping()
    sink.close_sync()
    assert not await sink.ping()


def test_redis_sink_rejects_bad_url_options() -> None:
    """A13: a non-numeric maxlen/max_age in the sink URL is a configuration error at start."""
    with pytest.raises(ConfigurationError, match="invalid redis audit sink option"):
        RedisSink("redis://127.0.0.1:6379/0?maxlen=lots")
    with pytest.raises(ConfigurationError):
        RedisSink("redis://127.0.0.1:6379/0?max_age=soon")


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.5"


async def test_redis_sink_down_is_store_unavailable() -> None:
    """L8: with Redis refusing, count/query raise StoreUnavailableError and ping is False."""
    sink = RedisSink(_refused_url())
    await sink.write_batch([])  # nothing to write: no connection attempted, no error
    assert not await sink.ping()
    with pytest.raises(StoreUnavailableError):
        await sink.count()
    with pytest.raises(StoreUnavailableError):
        await sink.query(limit=5)
    await sink.aclose()


@pytest.mark.redis
async def test_corrupt_stream_entry_is_a_store_error(redis_url: str) -> None:
    """A foreign entry in the audit stream is a StoreError, never a raw decoding exception."""
    sink = RedisSink(redis_url, stream="audit-cov")
    await sink.write_batch([_rec(1)])
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.xadd("audit-cov", {"d": b"{not json"})
    finally:
        raw.close()
    with pytest.raises(StoreError) as info:
        await sink.query(limit=5)
    assert not isinstance(info.value, StoreUnavailableError)
    await sink.aclose()
