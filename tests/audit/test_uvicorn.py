"""End-to-end audit under uvicorn on 127.0.0.1: every call recorded, SIGTERM flushes, streaming."""

from __future__ import annotations

import collections
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.audit.serve_app import CHUNK, STREAM_CHUNKS
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    base_url: str
    db: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> bool:
        """SIGTERM the server; return whether it shut down gracefully.

        uvicorn re-raises the captured SIGTERM after its graceful shutdown, so a clean exit is
        either 0 or "killed by SIGTERM" (-15), never a traceback exit code.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30) in (0, -signal.SIGTERM)

    def rows(self) -> list[dict[str, object]]:
        conn = sqlite3.connect(self.db)
        try:
            return [json.loads(r[0]) for r in conn.execute("SELECT data FROM audit_records")]
        finally:
            conn.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    db = tmp_path / "audit.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.audit.serve_app", str(port), str(db)], cwd=ROOT
    )
    try:
        _wait_listening(port, proc)
        yield Server(f"http://127.0.0.1:{port}", db, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


PATHS = ["/ok", "/ok", "/ok", "/unauth", "/forbidden", "/large", "/limited"]
STATUS = {"/ok": 200, "/unauth": 401, "/forbidden": 403, "/large": 413, "/limited": 429}


@pytest.mark.slow
def test_ten_thousand_requests_then_sigterm_leave_exactly_ten_thousand_records(
    server: Server,
) -> None:
    """10,000 mixed calls (2xx/401/403/413/429) under uvicorn, then SIGTERM: 10,000 rows (M5)."""
    # Bounded concurrency: 16 connections. A thread pool of sync clients is used because on this
    # sandbox's loopback an asyncio httpx client spends ~5 ms per request in socket.send.
    total = 10_000
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    with httpx.Client(base_url=server.base_url, limits=limits, timeout=30) as client:

        def call(i: int) -> int:
            return client.get(PATHS[i % len(PATHS)], params={"i": str(i)}).status_code

        with ThreadPoolExecutor(16) as pool:
            sent = collections.Counter(pool.map(call, range(total)))
    assert sum(sent.values()) == total
    assert server.stop()
    rows = server.rows()
    assert len(rows) == total
    assert len({r["id"] for r in rows}) == total
    got = collections.Counter(int(str(r["status"])) for r in rows)
    assert got == sent
    assert {r["rejection"] for r in rows if r["status"] == 429} == {"quota-exceeded"}
    assert all(r["key_id"] == "key-1" for r in rows if r["status"] == 200)


@pytest.mark.anyio
async def test_streamed_response_and_sse_keep_streaming_through_audit(server: Server) -> None:
    """The first chunk of a stream and the first SSE event arrive before the app finishes (M4)."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        async with client.stream("GET", "/stream") as resp:
            chunks = resp.aiter_raw()
            first = await chunks.__anext__()
            assert first == b"first\n"
            assert (await client.get("/release", params={"name": "stream"})).status_code == 200
            rest = b"".join([c async for c in chunks])
        assert len(rest) == STREAM_CHUNKS * len(CHUNK)
        assert resp.headers["x-request-id"]

        async with client.stream("GET", "/sse") as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            lines = resp.aiter_lines()
            assert await lines.__anext__() == "data: one"
            assert (await client.get("/release", params={"name": "sse"})).status_code == 200
            remaining = [line async for line in lines]
        assert "data: two" in remaining
    assert server.stop()
    by_path = {r["path"]: r for r in server.rows()}
    stream = by_path["/stream"]
    assert stream["status"] == 200
    assert stream["bytes_out"] == len(b"first\n") + STREAM_CHUNKS * len(CHUNK)
    assert not stream["error"] and not stream["client_disconnected"]
    assert by_path["/sse"]["bytes_out"] == len(b"data: one\n\ndata: two\n\n")
