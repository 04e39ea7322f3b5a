"""IdempotencyMiddleware under failure: 5xx, crashes, disconnects, big bodies, a failing store."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.idempotency import MemoryIdempotencyStore, StoredResponse
from extapi_kit.idempotency._base import BeginResult
from extapi_kit.middleware.idempotency import IdempotencyMiddleware
from tests.idempotency.support import (
    KEY,
    Recorder,
    client,
    counting_app,
    http_scope,
    outer_layer,
    scripted_receive,
)

pytestmark = pytest.mark.anyio


def _post_headers() -> dict[str, str]:
    return {"idempotency-key": KEY, "content-type": "application/json"}


async def test_server_error_is_stored_and_replayed() -> None:
    """I4: a 5xx from the app counts as executed (Stripe): the retry replays it, no second run."""
    rec = Recorder(status=500)
    app = IdempotencyMiddleware(counting_app(rec))
    async with client(app) as c:
        first = await c.post("/orders", content=b"{}", headers=_post_headers())
        second = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert first.status_code == second.status_code == 500
    assert second.headers["idempotent-replayed"] == "true" and rec.calls == 1


async def test_server_error_not_stored_when_configured() -> None:
    """I4 variant: with store_server_errors=False a 5xx leaves no record; the retry runs again."""
    rec = Recorder(status=503)
    app = outer_layer(IdempotencyMiddleware(counting_app(rec), store_server_errors=False), rec)
    async with client(app) as c:
        await c.post("/orders", content=b"{}", headers=_post_headers())
        await c.post("/orders", content=b"{}", headers=_post_headers())
    assert rec.calls == 2 and rec.outcomes == ["not_stored", "not_stored"]


async def test_client_errors_from_the_app_are_stored() -> None:
    """A 4xx produced by the app itself is a result of execution and is replayed."""
    rec = Recorder(status=409)
    app = IdempotencyMiddleware(counting_app(rec))
    async with client(app) as c:
        await c.post("/orders", content=b"{}", headers=_post_headers())
        again = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert again.status_code == 409 and again.headers["idempotent-replayed"] == "true"
    assert rec.calls == 1


@pytest.mark.parametrize("when", ["before_start", "after_start"])
async def test_app_crash_leaves_no_record(when: str) -> None:
    """I4: an app crash before the response completed leaves no record; the retry executes."""
    store = MemoryIdempotencyStore()
    rec = Recorder(crash=when)
    app = outer_layer(IdempotencyMiddleware(counting_app(rec), store=store), rec)
    async with client(app) as c:
        with pytest.raises(RuntimeError, match="boom"):
            await c.post("/orders", content=b"{}", headers=_post_headers())
        assert len(store) == 0
        rec.crash = None
        retry = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert rec.calls == 2 and rec.outcomes == ["aborted", "stored"]


async def test_client_disconnect_mid_body_never_calls_the_app() -> None:
    """M1/I4: 30 KB of a 100 KB body then a disconnect: app not called, no record, retry runs."""
    store = MemoryIdempotencyStore()
    rec = Recorder()
    mw = IdempotencyMiddleware(counting_app(rec), store=store)
    app = outer_layer(mw, rec)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = http_scope()
    scope["headers"].append((b"content-length", b"100000"))
    receive = scripted_receive(
        [{"type": "http.request", "body": b"x" * 10_000, "more_body": True}] * 3
    )
    await app(scope, receive, send)
    assert rec.calls == 0 and sent == [] and len(store) == 0
    assert rec.outcomes == ["aborted"]
    async with client(app) as c:
        r = await c.post("/orders", content=b"x" * 100_000, headers={"idempotency-key": KEY})
    assert r.status_code == 201 and rec.calls == 1 and rec.bodies == [b"x" * 100_000]


async def test_disconnect_before_response_completes_releases_the_lock() -> None:
    """I4: an app that stops mid-response (client gone) leaves no record, so a retry can run."""
    store = MemoryIdempotencyStore()

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        # The client went away: the app gives up without finishing the response.

    mw = IdempotencyMiddleware(streaming, store=store)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await mw(http_scope(), scripted_receive([{"type": "http.request", "body": b"{}"}]), send)
    assert len(sent) == 2 and len(store) == 0


async def test_cancelled_request_releases_the_lock() -> None:
    """I4: a request cancelled while the app runs (server shutdown) leaves no in-flight record."""
    store = MemoryIdempotencyStore()
    rec = Recorder(gate=anyio.Event(), entered=anyio.Event())
    mw = IdempotencyMiddleware(counting_app(rec), store=store)

    async def send(message: Any) -> None:
        return None

    async with anyio.create_task_group() as tg:
        tg.start_soon(mw, http_scope(), scripted_receive([{"type": "http.request"}]), send)
        assert rec.entered is not None
        await rec.entered.wait()
        assert len(store) == 1
        tg.cancel_scope.cancel()
    assert len(store) == 0


async def test_large_response_passes_through_and_is_not_replayed() -> None:
    """A response over max_body_bytes reaches the client intact; a retry is 409, never a rerun."""
    rec = Recorder(response_size=5000)
    app = outer_layer(IdempotencyMiddleware(counting_app(rec), max_body_bytes=1000), rec)
    async with client(app) as c:
        first = await c.post("/orders", content=b"{}", headers=_post_headers())
        retry = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert first.status_code == 201 and first.content == b"x" * 5000
    assert retry.status_code == 409
    assert retry.json()["type"].endswith("/idempotency-response-not-stored")
    assert rec.calls == 1 and rec.outcomes == ["too_large", "conflict"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_large_request_bypasses_idempotency(chunked: bool) -> None:
    """A request body over max_body_bytes runs without idempotency and reaches the app whole."""
    rec = Recorder()
    app = outer_layer(IdempotencyMiddleware(counting_app(rec), max_body_bytes=1000), rec)
    body = b"y" * 5000

    async def chunks() -> Any:
        for i in range(0, len(body), 700):
            yield body[i : i + 700]

    async with client(app) as c:
        for _ in range(2):
            content: Any = chunks() if chunked else body
            r = await c.post("/orders", content=content, headers={"idempotency-key": KEY})
            assert r.status_code == 201
    assert rec.calls == 2 and rec.bodies == [body, body]
    assert rec.outcomes == ["bypassed", "bypassed"]


async def test_large_request_rejected_when_configured() -> None:
    """With oversized_request='reject' a keyed request over the cap is 413; the app never runs."""
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec), max_body_bytes=10, oversized_request="reject")
    async with client(app) as c:
        r = await c.post("/orders", content=b"z" * 11, headers={"idempotency-key": KEY})
    assert r.status_code == 413 and rec.calls == 0


class BrokenStore(MemoryIdempotencyStore):
    """A store that fails (or hangs) at a chosen step."""

    def __init__(self, fail: str, hang: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.hang = hang

    async def _maybe_fail(self, step: str) -> None:
        if step == self.fail:
            if self.hang:
                await anyio.sleep_forever()
            raise StoreUnavailableError("down")

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        await self._maybe_fail("begin")
        return await super().begin(key, fingerprint, now=now, lease=lease)

    async def complete(
        self, key: str, token: str, response: StoredResponse, *, now: float, ttl: float
    ) -> bool:
        await self._maybe_fail("complete")
        return await super().complete(key, token, response, now=now, ttl=ttl)

    async def release(self, key: str, token: str) -> bool:
        await self._maybe_fail("release")
        return await super().release(key, token)


@pytest.mark.parametrize("hang", [False, True])
async def test_store_down_fails_closed(hang: bool, caplog: pytest.LogCaptureFixture) -> None:
    """DESIGN §6: when the lock cannot be written (error or past the deadline) the write is 503."""
    rec = Recorder()
    mw = IdempotencyMiddleware(
        counting_app(rec), store=BrokenStore("begin", hang=hang), store_timeout=0.05
    )
    app = outer_layer(mw, rec)
    async with client(app) as c:
        r = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["type"].endswith("/service-unavailable")
    assert rec.calls == 0 and rec.outcomes == ["unavailable"]
    assert "8e03978e" not in caplog.text


async def test_completion_failure_keeps_the_lock(caplog: pytest.LogCaptureFixture) -> None:
    """If storing the result fails, the client still gets it, an error is logged, the lock stays."""
    caplog.set_level(logging.ERROR, "extapi_kit.idempotency")
    rec = Recorder()
    mw = IdempotencyMiddleware(counting_app(rec), store=BrokenStore("complete"))
    app = outer_layer(mw, rec)
    async with client(app) as c:
        first = await c.post("/orders", content=b"{}", headers=_post_headers())
        retry = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert first.status_code == 201 and retry.status_code == 409
    assert rec.calls == 1 and rec.outcomes == ["store_failed", "conflict"]
    assert "could not store idempotency record" in caplog.text
    assert "8e03978e" not in caplog.text


async def test_release_failure_is_logged_and_lock_expires(caplog: pytest.LogCaptureFixture) -> None:
    """If releasing after a crash fails, it is logged and the lock waits for its lease to end."""
    rec = Recorder(crash="before_start")
    mw = IdempotencyMiddleware(counting_app(rec), store=BrokenStore("release"))
    async with client(mw) as c:
        with pytest.raises(RuntimeError):
            await c.post("/orders", content=b"{}", headers=_post_headers())
    assert "could not release idempotency lock" in caplog.text


async def test_pathsend_response_counts_as_too_large() -> None:
    """A file sent with the pathsend extension cannot be captured: it is recorded as too large."""
    store = MemoryIdempotencyStore()

    async def file_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/etc/hostname"})

    async def send(message: Any) -> None:
        return None

    mw = IdempotencyMiddleware(file_app, store=store)
    await mw(http_scope(), scripted_receive([{"type": "http.request", "body": b"{}"}]), send)
    [record] = list(store._records.values())
    assert record.response is not None and record.response.truncated


class SlowStore(MemoryIdempotencyStore):
    """A store whose begin answers only after the middleware's deadline, then succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.released = anyio.Event()
        self.slow = True

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        if self.slow:
            await anyio.sleep(0.2)
        return await super().begin(key, fingerprint, now=now, lease=lease)

    async def release(self, key: str, token: str) -> bool:
        done = await super().release(key, token)
        self.released.set()
        return done


async def test_lock_taken_after_the_deadline_is_released() -> None:
    """Fail closed: a begin that lands after the 503 has its lock released, so a retry can run."""
    store = SlowStore()
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec), store=store, store_timeout=0.05)
    async with client(app) as c:
        refused = await c.post("/orders", content=b"{}", headers=_post_headers())
        assert refused.status_code == 503 and rec.calls == 0
        with anyio.fail_after(10):  # a guard against a hang, not a timing assertion
            await store.released.wait()
        assert len(store) == 0
        store.slow = False
        retry = await c.post("/orders", content=b"{}", headers=_post_headers())
    assert retry.status_code == 201 and rec.calls == 1
