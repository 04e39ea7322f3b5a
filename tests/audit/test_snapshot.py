"""The audit queue holds flat snapshots, never the request's scope, receive or send."""

from __future__ import annotations

import gc
import os
import weakref

import httpx
import pytest

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.audit import MemorySink
from extapi_kit.audit.record import new_record_id
from extapi_kit.middleware.audit import AuditMiddleware


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _Server:
    """A server's per-request receive/send, to check nothing keeps it alive."""

    async def receive(self) -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Message) -> None:
        return None


@pytest.mark.anyio
async def test_queued_request_keeps_no_scope_or_server_objects_alive() -> None:
    """A queued record does not pin the scope or the server's receive/send (less GC work)."""
    sink = MemorySink()
    mw = AuditMiddleware(_ok, sink=sink, flush_interval=60)
    server = _Server()
    marker = _Server()  # any weak-referenceable object the scope alone holds
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "query_string": b"api_key=secret&page=2",
        "headers": [(b"user-agent", b"ua/1")],
        "client": ("203.0.113.7", 1234),
        "state": {},
        "marker": marker,
    }
    await mw(scope, server.receive, server.send)
    assert mw.writer.queued == 1
    server_ref = weakref.ref(server)
    scope_ref = weakref.ref(marker)
    del server, scope, marker
    gc.collect()
    assert server_ref() is None and scope_ref() is None
    await mw.flush()
    (rec,) = sink.records
    assert (rec.path, rec.status, rec.user_agent) == ("/x", 200, "ua/1")
    assert rec.client_ip == "203.0.113.7" and rec.query == "api_key=[REDACTED]&page=2"
    await mw.aclose()


@pytest.mark.anyio
async def test_trusted_proxy_address_is_resolved_from_the_snapshot() -> None:
    """The client address is resolved off the request path from the kept peer and headers."""
    from extapi_kit.clientip import ClientIPResolver

    sink = MemorySink()
    mw = AuditMiddleware(_ok, sink=sink, client_ip=ClientIPResolver(trusted_proxies=["10.0.0.0/8"]))
    transport = httpx.ASGITransport(mw, client=("10.0.0.2", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/y", headers={"x-forwarded-for": "198.51.100.9"})
    await mw.flush()
    assert [r.client_ip for r in sink.records] == ["198.51.100.9"]
    await mw.aclose()


def test_record_ids_are_unique_ordered_and_differ_after_fork() -> None:
    """Record ids (sink de-duplication keys) never repeat, sort by time; a fork reseeds them."""
    ids = [new_record_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 28 for i in ids)
    clock_parts = [i[:16] for i in ids]
    assert clock_parts == sorted(clock_parts)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, new_record_id()[16:].encode())
        os._exit(0)
    os.close(write)
    child_tail = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_tail = new_record_id()[16:]
    assert child_tail[:6] != parent_tail[:6]
