"""``IdempotencyMiddleware``: safe retries of writes with an ``Idempotency-Key`` header.

Semantics follow draft-ietf-httpapi-idempotency-key-header-07 (400 when a required key is
missing, 422 when a key is reused with another payload, 409 while the first request is still in
flight) and Stripe's practice (keys up to 255 characters, the result stored once execution began,
including 5xx, retained for 24 hours). Records are scoped by (principal, method, route) so one
tenant never sees another's response (case Z3); the principal of an API key is its lineage (the
first key id of its rotation chain), so a retry with the rotated key replays (case I6). The
store failing means the write is refused with 503, never executed without protection (DESIGN §6,
fail closed). See ``docs/idempotency.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from typing import TypeVar

import anyio

from extapi_kit import telemetry
from extapi_kit._asgi import get_header, get_header_all
from extapi_kit._types import ASGIApp, Clock, Receive, Scope, Send
from extapi_kit._units import parse_duration, parse_size
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.context import RequestContext, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.idempotency import IdempotencyStore, MemoryIdempotencyStore
from extapi_kit.idempotency._base import IN_FLIGHT, BeginResult, IdempotencyRecord
from extapi_kit.idempotency._http import ResponseCapture, read_body, replay_receive, send_stored
from extapi_kit.idempotency.fingerprint import (
    parse_idempotency_key,
    record_key,
    request_fingerprint,
)
from extapi_kit.problems import PROBLEMS, send_problem
from extapi_kit.stores import store_from_url

__all__ = ["RESPONSE_NOT_STORED", "IdempotencyMiddleware"]

logger = logging.getLogger("extapi_kit.idempotency")
T = TypeVar("T")

_OFF, _ON, _REQUIRED = 0, 1, 2
_MODES = {"off": _OFF, "on": _ON, "required": _REQUIRED}
_CONFLICT_RETRY_AFTER = b"1"
_UNAVAILABLE_RETRY_AFTER = b"5"

RESPONSE_NOT_STORED = PROBLEMS["idempotency-response-not-stored"]
"""Answer to a retry whose first response exceeded ``max_body_bytes`` (it ran; no replay)."""


class IdempotencyMiddleware:
    """Run each write at most once per Idempotency-Key and replay its stored response.

    Args:
        app: the ASGI app to protect.
        store: a store URL (``"memory://"``, ``"sqlite:///idem.db"``, ``"redis://..."``) or an
            :class:`~extapi_kit.idempotency.IdempotencyStore`.
        methods: methods handled when no route registry is in use.
        required: answer 400 ``idempotency-key-missing`` when a handled request has no key.
        rules: path prefix -> ``"on"``, ``"off"`` or ``"required"`` (longest prefix wins), used
            when no route registry is in use.
        ttl: how long completed records are kept (``"24h"``).
        lock_timeout: lease of the in-flight lock; after it a retry may take the record over, so
            set it above your slowest handler.
        max_body_bytes: the largest request body fingerprinted and response body stored.
        max_key_length: the longest Idempotency-Key accepted.
        header: the header name.
        store_timeout: deadline in seconds for each store call; past it the request gets 503.
        store_server_errors: store 5xx responses too (Stripe's rule); False lets a retry run again.
        oversized_request: ``"bypass"`` (run without idempotency) or ``"reject"`` (413) when the
            request body exceeds ``max_body_bytes``.
        client_ip: resolver used to scope anonymous requests by client address.
        clock: returns epoch seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: str | IdempotencyStore = "memory://",
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        rules: Mapping[str, str] | None = None,
        ttl: float | str = "24h",
        lock_timeout: float | str = "60s",
        max_body_bytes: int | str = "1MiB",
        max_key_length: int = 255,
        header: str = "idempotency-key",
        store_timeout: float | str = 0.5,
        store_server_errors: bool = True,
        oversized_request: str = "bypass",
        client_ip: ClientIPResolver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self._clock: Clock = clock or time.time
        self._methods = frozenset(m.upper() for m in methods)
        self._default = _REQUIRED if required else _ON
        self._required = required
        self._rules: list[tuple[str, int]] = []
        for prefix, mode in (rules or {}).items():
            if mode not in _MODES or not prefix.startswith("/"):
                raise ConfigurationError(
                    f"invalid idempotency rule {prefix!r}: {mode!r} "
                    "(prefix must start with '/', mode one of on/off/required)"
                )
            self._rules.append((prefix.rstrip("/"), _MODES[mode]))
        self._rules.sort(key=lambda r: len(r[0]), reverse=True)
        self._ttl = parse_duration(ttl)
        self._lease = parse_duration(lock_timeout)
        self._store_timeout = parse_duration(store_timeout)
        if self._ttl <= 0 or self._lease <= 0 or self._store_timeout <= 0:
            raise ConfigurationError("ttl, lock_timeout and store_timeout must be positive")
        self._max_body = parse_size(max_body_bytes)
        if not 1 <= max_key_length <= 8192:
            raise ConfigurationError(f"max_key_length must be 1..8192, not {max_key_length!r}")
        self._max_key = max_key_length
        self._header = header.lower().encode("latin-1")
        self._header_title = "-".join(part.capitalize() for part in header.split("-"))
        self._store_5xx = store_server_errors
        if oversized_request not in ("bypass", "reject"):
            raise ConfigurationError("oversized_request must be 'bypass' or 'reject'")
        self._reject_oversized = oversized_request == "reject"
        self._resolver = client_ip or ClientIPResolver()
        self._owns_store = isinstance(store, str)
        self.store: IdempotencyStore = (
            store_from_url("idempotency", store, clock=self._clock)
            if isinstance(store, str)
            else store
        )
        # The in-process store never waits on I/O, so it skips the deadline's timer handle.
        self._deadline = type(self.store) is not MemoryIdempotencyStore
        # Strong references to lock clean-ups scheduled from callbacks (asyncio keeps weak ones).
        self._background: set[asyncio.Future[bool]] = set()
        self._outcomes = telemetry.counter("extapi.idempotency.outcomes", "idempotency outcomes")

    async def _call(self, step: Awaitable[T]) -> T:
        if not self._deadline:
            return await step
        async with asyncio.timeout(self._store_timeout):
            return await step

    async def _begin(self, rkey: str, fingerprint: str) -> BeginResult:
        step = self.store.begin(rkey, fingerprint, now=self._clock(), lease=self._lease)
        if not self._deadline:
            return await step
        # Past the deadline the store may still take the lock (a SQLite thread keeps running);
        # shield the call and release such a late lock, or it would block retries for a lease.
        task = asyncio.ensure_future(step)
        try:
            async with asyncio.timeout(self._store_timeout):
                return await asyncio.shield(task)
        except BaseException:
            task.add_done_callback(lambda t: self._release_late(t, rkey))
            raise

    def _release_late(self, task: asyncio.Future[BeginResult], rkey: str) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        begun = task.result()
        if begun.acquired and begun.token is not None:
            cleanup = asyncio.ensure_future(self._call(self.store.release(rkey, begun.token)))
            self._background.add(cleanup)
            cleanup.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[bool]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("could not release a late idempotency lock: %r", task.exception())

    async def aclose(self) -> None:
        """Close the store if this middleware created it from a URL."""
        if self._owns_store:
            await self.store.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # lifespan untouched; websockets carry no idempotent writes.
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        mode = self._mode(scope, ctx)
        if mode == _OFF:
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send, ctx, mode)
        finally:
            if ctx.idempotency is not None:
                self._outcomes.add(1, {"outcome": ctx.idempotency})

    def _mode(self, scope: Scope, ctx: RequestContext) -> int:
        route = ctx.route
        if route is not None:
            if not route.idempotent:
                return _OFF
            return _REQUIRED if route.extra.get("idempotency_required", self._required) else _ON
        if scope["method"] not in self._methods:
            return _OFF
        path: str = scope["path"]
        for prefix, mode in self._rules:
            if path == prefix or path.startswith(prefix + "/"):
                return mode
        return self._default

    def _principal(self, scope: Scope, ctx: RequestContext) -> str:
        p = ctx.principal
        if p is not None and p.key_id:
            # The key's lineage (its first key id), not its own id: a retry sent with the rotated
            # key during the grace period must find the record the old key wrote (I6).
            return "key:" + (p.lineage_id or p.key_id)
        if p is not None and p.owner:
            return "owner:" + p.owner
        return "ip:" + (self._resolver.resolve(scope) or "unknown")

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, mode: int
    ) -> None:
        values = get_header_all(scope, self._header)
        if not values:
            if mode == _REQUIRED:
                ctx.idempotency = "missing"
                detail = f"This endpoint requires an {self._header_title} header."
                await send_problem(send, "idempotency-key-missing", detail, scope=scope)
                return
            ctx.idempotency = "absent"
            await self.app(scope, receive, send)
            return
        key = (
            parse_idempotency_key(values[0], max_length=self._max_key) if len(values) == 1 else None
        )
        if key is None:
            ctx.idempotency = "invalid"
            detail = (
                f"Send one {self._header_title} header: a quoted string of 1 to {self._max_key} "
                "printable ASCII characters."
            )
            await send_problem(send, "idempotency-key-invalid", detail, scope=scope)
            return

        length = get_header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            await self._oversized(scope, [], receive, send, ctx)
            return
        chunks, state = await read_body(receive, self._max_body)
        if state == "disconnected":
            ctx.idempotency = "aborted"  # M1: the app never sees a partial body; nothing stored
            return
        if state == "overflow":
            await self._oversized(scope, chunks, receive, send, ctx)
            return

        method: str = scope["method"]
        path: str = scope["path"]
        fingerprint = request_fingerprint(
            method,
            path,
            scope.get("query_string", b""),
            get_header(scope, b"content-type") or b"",
            chunks,
        )
        route = ctx.route.template if ctx.route is not None else path
        rkey = record_key(self._principal(scope, ctx), method, route, key)
        try:
            begun = await self._begin(rkey, fingerprint)
        except Exception as exc:
            # Fail closed (DESIGN §6): without a lock the write could run twice.
            logger.warning("idempotency store unavailable; refusing the write: %r", exc)
            ctx.idempotency = "unavailable"
            await send_problem(
                send,
                "service-unavailable",
                "Idempotency records cannot be written right now; retry later.",
                headers=[(b"retry-after", _UNAVAILABLE_RETRY_AFTER)],
                scope=scope,
            )
            return
        if begun.acquired and begun.token is not None:
            await self._execute(scope, chunks, receive, send, ctx, rkey, begun.token)
        elif begun.existing is not None:
            await self._answer_existing(scope, send, ctx, begun.existing, fingerprint)
        else:  # pragma: no cover - a custom store broke the contract
            raise TypeError("IdempotencyStore.begin returned neither a lock nor a record")

    async def _answer_existing(
        self,
        scope: Scope,
        send: Send,
        ctx: RequestContext,
        rec: IdempotencyRecord,
        fingerprint: str,
    ) -> None:
        if rec.fingerprint != fingerprint:
            ctx.idempotency = "mismatch"
            detail = f"This {self._header_title} was used with a different request."
            await send_problem(send, "idempotency-key-mismatch", detail, scope=scope)
        elif rec.state == IN_FLIGHT or rec.response is None:
            ctx.idempotency = "conflict"
            await send_problem(
                send,
                "idempotency-key-in-use",
                "The first request with this key is still being processed; retry shortly.",
                headers=[(b"retry-after", _CONFLICT_RETRY_AFTER)],
                scope=scope,
            )
        elif rec.response.truncated:
            ctx.idempotency = "conflict"
            await send_problem(send, RESPONSE_NOT_STORED, scope=scope)
        else:
            ctx.idempotency = "replayed"
            await send_stored(send, rec.response)

    async def _execute(
        self,
        scope: Scope,
        chunks: list[bytes],
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        rkey: str,
        token: str,
    ) -> None:
        capture = ResponseCapture(send, self._max_body)
        try:
            await self.app(scope, replay_receive(chunks, receive, complete=True), capture.send)
        except BaseException:
            # I4: a crash (or a cancelled request) before the response completed leaves no record.
            with anyio.CancelScope(shield=True):
                await self._finish(capture, ctx, rkey, token)
            raise
        await self._finish(capture, ctx, rkey, token)

    async def _finish(
        self, capture: ResponseCapture, ctx: RequestContext, rkey: str, token: str
    ) -> None:
        if not capture.complete or (capture.status >= 500 and not self._store_5xx):
            ctx.idempotency = "aborted" if not capture.complete else "not_stored"
            try:
                await self._call(self.store.release(rkey, token))
            except Exception as exc:
                logger.error(
                    "could not release idempotency lock %s (expires with its lease): %r",
                    rkey[:12],
                    exc,
                )
            return
        stored = capture.stored()
        try:
            done = await self._call(
                self.store.complete(rkey, token, stored, now=self._clock(), ttl=self._ttl)
            )
        except Exception as exc:
            # The write ran; the lock stays until its lease ends, then a retry may run it again.
            logger.error("could not store idempotency record %s: %r", rkey[:12], exc)
            ctx.idempotency = "store_failed"
            return
        if not done:
            logger.error(
                "idempotency lock %s was lost before completion (lease too short?)", rkey[:12]
            )
            ctx.idempotency = "store_failed"
            return
        ctx.idempotency = "too_large" if stored.truncated else "stored"

    async def _oversized(
        self, scope: Scope, chunks: list[bytes], receive: Receive, send: Send, ctx: RequestContext
    ) -> None:
        if self._reject_oversized:
            ctx.idempotency = "rejected"
            detail = f"Requests with {self._header_title} are limited to {self._max_body} bytes."
            await send_problem(send, "request-too-large", detail, scope=scope)
            return
        ctx.idempotency = "bypassed"
        logger.info("request body over %d bytes: processed without idempotency", self._max_body)
        if chunks:
            receive = replay_receive(chunks, receive, complete=False)
        await self.app(scope, receive, send)
