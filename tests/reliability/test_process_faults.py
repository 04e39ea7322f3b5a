"""Process faults: SIGTERM during load (graceful) and SIGKILL (nothing committed lost)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.reliability._server import serve
from tests.reliability.stack import READ_SCOPE, WRITE_SCOPE, cheap_service

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def _key(tmp_path: Path) -> tuple[str, str, str]:
    url = f"sqlite:///{tmp_path}/keys.db"
    service = cheap_service(url)
    record, key = await service.create("load", scopes=[READ_SCOPE, WRITE_SCOPE])
    await service.aclose()
    return url, record.id, key


async def test_sigterm_during_load_finishes_in_flight_and_flushes_audit(
    tmp_path: Path, redis_url: str
) -> None:
    """M5: SIGTERM while 16 clients hammer the stack → every request gets a response or a
    clean connection error, clean exit, lifespan shutdown ran, audit rows == responses received."""
    keys_url, _, key = await _key(tmp_path)
    env = {"EXTAPI_REL_KEYS": keys_url, "EXTAPI_REL_REDIS": redis_url}
    with serve(tmp_path, env) as server:
        received: list[int] = []
        errors: list[str] = []
        stop, enough = asyncio.Event(), asyncio.Event()

        async def client(n: int) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                for i in range(10_000):
                    if stop.is_set() and i % 2:
                        return
                    try:
                        method, path = ("POST", "/api/v1/orders") if i % 3 == 0 else ("GET", "/")
                        headers = {"X-API-Key": key, "Idempotency-Key": f"c{n}-{i}"}
                        if path == "/":
                            path = f"/api/v1/items/{i}"
                        r = await c.request(method, path, headers=headers, json={})
                        received.append(r.status_code)
                        if len(received) >= 300:
                            enough.set()
                    except httpx.TransportError as exc:  # a clean close after SIGTERM
                        errors.append(type(exc).__name__)
                        return

        async with asyncio.timeout(60):
            tasks = [asyncio.create_task(client(n)) for n in range(16)]
            await enough.wait()
            server.proc.send_signal(signal.SIGTERM)
            stop.set()
            await asyncio.gather(*tasks)
            code = await asyncio.to_thread(server.proc.wait, 30)
        assert code in (0, -signal.SIGTERM), server.log.read_text()
        assert set(received) <= {200, 201}, set(received)
        assert set(errors) <= {"ConnectError", "RemoteProtocolError", "ReadError"}, errors
        assert server.audit_rows() == len(received)
        events = server.lifespan_events()
        assert events.count("startup") == events.count("shutdown") == 1
        assert "Traceback" not in server.log.read_text()


async def test_sigkill_loses_nothing_committed(tmp_path: Path, redis_url: str) -> None:
    """M5: SIGKILL of the server after audit rows were flushed → the rows stay (WAL intact),
    the key store still verifies the key, and a restarted server serves it."""
    keys_url, key_id, key = await _key(tmp_path)
    env = {"EXTAPI_REL_KEYS": keys_url, "EXTAPI_REL_REDIS": redis_url}
    with serve(tmp_path, env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            for i in range(30):
                r = await c.get(f"/api/v1/items/{i}", headers={"X-API-Key": key})
                assert r.status_code == 200
        for _ in range(200):  # flushed within ~50 ms; bounded at 10 s
            if server.audit_rows() >= 30:
                break
            await asyncio.sleep(0.05)
        assert server.audit_rows() == 30
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL
        assert server.audit_rows() == 30
    service = cheap_service(keys_url)
    try:
        principal = await service.verify(key)
        assert principal.key_id == key_id
    finally:
        await service.aclose()
    again = tmp_path / "again"
    again.mkdir()
    with serve(again, env) as s2:
        async with httpx.AsyncClient(base_url=s2.url, timeout=10) as c:
            r = await c.get("/api/v1/items/1", headers={"X-API-Key": key})
            assert r.status_code == 200
