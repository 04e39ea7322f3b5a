"""Audit writer faults: a record that cannot be built, a sink that recovers only part-way (W8)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.audit import AuditRecord, MemorySink
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.middleware.audit import AuditMiddleware
from tests.middleware.test_audit import _Server

pytestmark = pytest.mark.anyio


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": headers or [],
        "client": ("198.51.100.1", 5555),
    }


class PickyResolver(ClientIPResolver):
    """A client-IP resolver that fails on one request (a bug in user code)."""

    def resolve(self, scope: Scope) -> str | None:
        if (b"x-poison", b"1") in scope.get("headers", ()):
            raise ValueError("resolver bug")
        return super().resolve(scope)


async def test_unbuildable_record_is_dropped_and_counted_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One record that fails to build is dropped and counted; the others are delivered."""
    sink = MemorySink()
    mw = AuditMiddleware(_ok, sink=sink, client_ip=PickyResolver())
    with caplog.at_level(logging.ERROR, logger="extapi_kit.audit"):
        for path, headers in (("/a", []), ("/b", [(b"x-poison", b"1")]), ("/c", [])):
            server = _Server([])
            await mw(_scope(path, headers), server.receive, server.send)
            assert server.sent[0]["status"] == 200
        await mw.aclose()
    await mw.aclose()  # closing twice is harmless
    assert [r.path for r in sink.records] == ["/a", "/c"]
    assert mw.dropped == 1
    assert "record dropped" in caplog.text


class HalfwaySink(MemorySink):
    """Down, then accepts ``allow`` more batches, then down again, then up."""

    def __init__(self) -> None:
        super().__init__()
        self.allow: int | None = 0

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        if self.allow is not None:
            if self.allow <= 0:
                raise StoreUnavailableError("sink down")
            self.allow -= 1
        await super().write_batch(records)


async def test_partial_resend_never_duplicates_or_loses_records(tmp_path: Path) -> None:
    """W8: a sink that fails mid re-send keeps only the unsent records spilled; none twice."""
    sink = HalfwaySink()
    mw = AuditMiddleware(_ok, sink=sink, batch_size=2, spill_path=str(tmp_path))
    for i in range(5):
        server = _Server([])
        await mw(_scope(f"/r{i}"), server.receive, server.send)
    await mw.flush()  # sink down: all five spilled
    assert sink.records == []
    sink.allow = 1  # one batch of two gets through, then it fails again
    await mw.flush()
    assert len(sink.records) == 2
    sink.allow = None
    await mw.flush()
    await mw.aclose()
    assert sorted(r.path for r in sink.records) == [f"/r{i}" for i in range(5)]
    assert len({r.id for r in sink.records}) == 5
