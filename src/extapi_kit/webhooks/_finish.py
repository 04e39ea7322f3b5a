"""Group the ``finish`` calls of a webhook store into one write per batch.

Dispatcher workers finish attempts one by one; a store that wrote each alone would pay a thread
hop or round trip and a commit per attempt. :class:`FinishBatcher` queues the calls that arrive
while a write is in flight and writes them together next; every caller still waits for (and sees
the error of) the write that carried its own finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["FinishBatcher"]

T = TypeVar("T")


class FinishBatcher(Generic[T]):
    """Write queued items in batches, one batch at a time.

    Args:
        write: writes one batch (all or nothing).
        gather: seconds to wait before each write, so items completing together share it.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, gather: float = 0.0) -> None:
        self._write = write
        self._gather = gather
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Queue ``item`` and wait until the batch carrying it is written.

        Args:
            item: what the store's ``write`` needs for one finish.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await fut

    async def drain(self) -> None:
        """Wait for the batch being written, if any (errors went to its callers)."""
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await self._flusher

    async def _flush(self) -> None:
        while self._queue:
            if self._gather:
                await asyncio.sleep(self._gather)
            batch, self._queue = self._queue, []
            try:
                await self._write([item for item, _ in batch])
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
