"""The background audit writer: a bounded queue, batched delivery, spill and re-send.

The request path only calls :meth:`AuditWriter.put` (a ``deque.append``). A task on the event
loop takes batches off the queue and hands each to every sink. A sink that raises gets the batch
appended to its spill file instead; while a spill is pending, new batches go straight to the spill
file (so a dead sink never stalls the writer on its timeouts), and the spill is re-sent, oldest
first, on a backoff schedule and on every :meth:`flush`. A full queue drops the record, counts
it in :attr:`AuditWriter.dropped`, logs (throttled) and exports ``extapi.audit.dropped``
(DESIGN §6: no silent loss).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from extapi_kit import telemetry
from extapi_kit.audit.record import AuditRecord, new_record_id
from extapi_kit.audit.sink_base import AuditSink
from extapi_kit.audit.spill import SpillFile, default_spill_path

__all__ = ["AuditWriter"]

logger = logging.getLogger("extapi_kit.audit.writer")

_LOG_INTERVAL = 10.0
_MAX_BACKOFF = 30.0
# The writer builds records from the queue once this many are waiting (see ``_staged``).
_STAGE_AT = 32
_WRITERS: weakref.WeakSet[AuditWriter] = weakref.WeakSet()


def _observe_depth(options: CallbackOptions) -> Iterable[Observation]:
    yield Observation(sum(len(w._queue) for w in list(_WRITERS)))


class _SinkState:
    __slots__ = ("failures", "next_retry", "pending", "sink", "spill")

    def __init__(self, sink: AuditSink, spill: SpillFile) -> None:
        self.sink = sink
        self.spill = spill
        self.pending = spill.has_records()
        self.failures = 0
        self.next_retry = 0.0


class AuditWriter:
    """Deliver queued audit records to sinks in batches without ever blocking a request.

    Args:
        sinks: where records go.
        owned: the sinks this writer created and must close.
        queue_size: maximum records waiting in memory; more are dropped (and counted).
        batch_size: maximum records per ``write_batch`` call.
        flush_interval: seconds between deliveries when the queue is not full enough to wake
            the writer early.
        spill_dir: directory for spill files (default: next to a SQLite file, else temp dir).
        retry_interval: first delay before re-sending a spill; doubles up to 30 s.
        builder: turns a queued item that is not yet an AuditRecord into one (the middleware
            queues its cheap per-request observer and builds the record here, off the request
            path).
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        *,
        owned: Sequence[AuditSink] = (),
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        spill_dir: str | None = None,
        retry_interval: float = 1.0,
        builder: Callable[[Any], AuditRecord] | None = None,
    ) -> None:
        self._states = [
            _SinkState(s, SpillFile(default_spill_path(s, i, spill_dir)))
            for i, s in enumerate(sinks)
        ]
        self._owned = list(owned)
        self._queue: deque[Any] = deque()
        # Records built from the queue, waiting for a full batch or the flush interval. The queue
        # is drained every few requests so the per-request objects a snapshot holds (the scope's
        # header list, the context's dicts) die young instead of being promoted by the garbage
        # collector into old generations, whose full collections stalled requests for tens of ms.
        self._staged: list[AuditRecord] = []
        self._stage_at = min(batch_size, _STAGE_AT)
        self._last_delivery = time.monotonic()
        self._builder = builder
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_interval = retry_interval
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self.dropped = 0
        self.spilled = 0
        self.resent = 0
        self.written = 0
        self._dropped_unlogged = 0
        self._last_drop_log = float("-inf")
        self._last_fail_log = float("-inf")
        _WRITERS.add(self)
        telemetry.observable_gauge(
            "extapi.audit.queue.depth", _observe_depth, "Audit records waiting in memory"
        )

    def __repr__(self) -> str:
        return f"AuditWriter({len(self._states)} sinks, queued={len(self._queue)})"

    @property
    def sinks(self) -> list[AuditSink]:
        """The sinks, in order."""
        return [st.sink for st in self._states]

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (records put afterwards are counted as dropped)."""
        return self._closed

    @property
    def queued(self) -> int:
        """Records waiting in memory."""
        return len(self._queue) + len(self._staged)

    @property
    def spill_paths(self) -> list[str]:
        """The spill file of each sink, in order."""
        return [st.spill.path for st in self._states]

    def put(self, record: AuditRecord | Any) -> None:
        """Enqueue a record, or an item for the builder (request path: never blocks or raises).

        Args:
            record: the record, or an item the ``builder`` turns into one.
        """
        queue = self._queue
        if len(queue) + len(self._staged) >= self._queue_size or self._closed:
            self._drop()
            return
        queue.append(record)
        if len(queue) >= self._stage_at and self._wake is not None:
            self._wake.set()

    def _drop(self) -> None:
        self.dropped += 1
        self._dropped_unlogged += 1
        telemetry.counter("extapi.audit.dropped", "Audit records dropped: queue full").add(1)
        now = time.monotonic()
        if now - self._last_drop_log >= _LOG_INTERVAL:
            logger.error(
                "audit queue full (%d records) or writer closed: dropped %d records (%d in total)",
                self._queue_size,
                self._dropped_unlogged,
                self.dropped,
            )
            self._last_drop_log = now
            self._dropped_unlogged = 0

    def ensure_started(self) -> None:
        """Start the writer task on the running loop, if not running there already."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        if self._closed:
            return
        self._loop = loop
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = loop.create_task(self._run(), name="extapi-kit-audit-writer")

    async def _run(self) -> None:
        if not (self._wake is not None):  # an internal invariant, not user input
            raise RuntimeError("set by ensure_started before the task exists")
        while not self._closed:
            if len(self._queue) < self._stage_at:
                self._wake.clear()
                wait = self._flush_interval
                if self._staged:
                    wait = max(0.0, wait - (time.monotonic() - self._last_delivery))
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            try:
                await self._deliver_all(force=False)
            except Exception:  # pragma: no cover - a bug guard: the writer must not die
                logger.exception("audit writer failed; continuing")

    async def flush(self) -> None:
        """Deliver everything queued now, re-sending pending spills regardless of backoff."""
        if self._lock is None or self._loop is not asyncio.get_running_loop():
            self._lock = asyncio.Lock()
        await self._deliver_all(force=True)

    async def aclose(self) -> None:
        """Stop the writer task, flush, and close the sinks this writer created."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is not None and self._loop is asyncio.get_running_loop() and not task.done():
            if not (self._wake is not None):  # an internal invariant, not user input
                raise RuntimeError("internal invariant broken")
            self._wake.set()
            try:
                await task
            except Exception:  # pragma: no cover - _run never raises
                pass
        await self.flush()
        for st in self._states:
            if st.pending:
                logger.warning(
                    "audit sink %r is still unavailable at shutdown; its records stay in %s "
                    "and are re-sent on the next start",
                    st.sink,
                    st.spill.path,
                )
        for sink in self._owned:
            try:
                await sink.aclose()
            except Exception:
                logger.warning("closing audit sink %r failed", sink, exc_info=True)

    async def _deliver_all(self, *, force: bool) -> None:
        if not (self._lock is not None):  # an internal invariant, not user input
            raise RuntimeError("internal invariant broken")
        async with self._lock:
            queue, staged = self._queue, self._staged
            if not queue and not staged:
                for st in self._states:
                    if st.pending:
                        await self._resend(st, force=force)
                return
            if queue:
                built = self._materialize([queue.popleft() for _ in range(len(queue))])
                self._count(built)
                staged += built
            due = time.monotonic() - self._last_delivery >= self._flush_interval
            if not (force or due or len(staged) >= self._batch_size):
                return
            while staged:
                batch = staged[: self._batch_size]
                del staged[: self._batch_size]
                for st in self._states:
                    await self._deliver(st, batch, force=force)
            self._last_delivery = time.monotonic()

    def _materialize(self, items: list[Any]) -> list[AuditRecord]:
        out: list[AuditRecord] = []
        for item in items:
            try:
                if isinstance(item, AuditRecord):
                    rec = item
                elif self._builder is not None:
                    rec = self._builder(item)
                else:
                    raise TypeError(f"not an AuditRecord: {type(item).__name__}")
            except Exception:
                self.dropped += 1
                telemetry.counter("extapi.audit.dropped", "Audit records dropped").add(1)
                logger.exception("building an audit record failed; record dropped")
                continue
            if not rec.id:
                rec.id = new_record_id()
            out.append(rec)
        return out

    def _count(self, batch: Sequence[AuditRecord]) -> None:
        # One counter update per distinct (outcome, reason, protocol) in the batch, not per record.
        counts: dict[tuple[str, str | int, str], int] = {}
        for rec in batch:
            key = (rec.outcome, rec.rejection or rec.status, rec.protocol)
            counts[key] = counts.get(key, 0) + 1
        requests = telemetry.counter("extapi.requests", "Requests by outcome and reason")
        for (outcome, reason, protocol), n in counts.items():
            requests.add(n, {"outcome": outcome, "reason": str(reason), "protocol": protocol})

    async def _deliver(self, st: _SinkState, batch: list[AuditRecord], *, force: bool) -> None:
        if st.pending and not await self._resend(st, force=force):
            await self._spill(st, batch)
            return
        try:
            await st.sink.write_batch(batch)
        except Exception as exc:
            self._sink_failed(st, exc)
            await self._spill(st, batch)
            return
        self.written += len(batch)

    def _sink_failed(self, st: _SinkState, exc: BaseException) -> None:
        st.failures += 1
        delay = min(self._retry_interval * 2 ** (st.failures - 1), _MAX_BACKOFF)
        st.next_retry = time.monotonic() + delay
        telemetry.counter("extapi.audit.sink.errors", "Audit sink write failures").add(
            1, {"sink": type(st.sink).__name__}
        )
        now = time.monotonic()
        if now - self._last_fail_log >= _LOG_INTERVAL:
            logger.warning(
                "audit sink %r failed (%s: %s); spilling to %s",
                st.sink,
                type(exc).__name__,
                exc,
                st.spill.path,
            )
            self._last_fail_log = now

    async def _spill(self, st: _SinkState, batch: list[AuditRecord]) -> None:
        try:
            await asyncio.to_thread(st.spill.append, batch)
        except OSError as exc:  # unwritable, or refused as not ours (issue 15 G4)
            self.dropped += len(batch)
            telemetry.counter("extapi.audit.dropped", "Audit records dropped").add(len(batch))
            logger.error(
                "audit spill file %s not writable (%s): %d records lost",
                st.spill.path,
                exc.strerror or exc,
                len(batch),
            )
            return
        st.pending = True
        self.spilled += len(batch)
        telemetry.counter("extapi.audit.spilled", "Audit records spilled to disk").add(len(batch))

    async def _resend(self, st: _SinkState, *, force: bool) -> bool:
        if not force and time.monotonic() < st.next_retry:
            return False
        try:
            records = await asyncio.to_thread(st.spill.read)
        except OSError as exc:
            # A symlink or another user's file at the spill name is never re-sent into the sink
            # (nor removed); delivery carries on without it (issue 15 G4).
            logger.warning("audit spill file %s not re-sent (%s)", st.spill.path, exc.strerror)
            st.pending = False
            return True
        sent = 0
        try:
            while sent < len(records):
                chunk = records[sent : sent + self._batch_size]
                await st.sink.write_batch(chunk)
                sent += len(chunk)
        except Exception as exc:
            self._sink_failed(st, exc)
            if sent:
                await asyncio.to_thread(st.spill.replace, records[sent:])
                self._resent(sent)
            return False
        await asyncio.to_thread(st.spill.replace, [])
        st.pending = False
        st.failures = 0
        self.written += sent
        self._resent(sent)
        if sent:
            logger.info("audit sink %r recovered: re-sent %d spilled records", st.sink, sent)
        return True

    def _resent(self, n: int) -> None:
        self.resent += n
        telemetry.counter("extapi.audit.resent", "Spilled audit records re-sent").add(n)
