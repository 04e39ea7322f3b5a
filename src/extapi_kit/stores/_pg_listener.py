"""One ``LISTEN`` connection per PostgreSQL store, reconnecting by itself.

The key store listens for changes (revocations reach every process within a second, case A6) and
the webhook store for new work (dispatcher wake-ups, P7). Both need the same connection life: start
on first use and wait until ``LISTEN`` is in place, notice a connection that died (closed, or
silent behind a dead network: a ``SELECT 1`` heartbeat with a deadline), tell the store, and
reconnect. What a notification or a reconnect means is the store's business (its callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from extapi_kit.stores._postgres import PostgresConfig, import_asyncpg

__all__ = ["HEARTBEAT", "RECONNECT_DELAY", "PostgresListener"]

HEARTBEAT = 5.0
RECONNECT_DELAY = 0.5
SUBSCRIBE_WAIT = 1.0


def _ignore(*_: object) -> None:
    return None


class PostgresListener:
    """Listen on one channel on a connection of its own (never a pooled one).

    Args:
        config: where to connect.
        channel: the channel name.
        on_notify: called with each notification's payload.
        on_connected: called each time ``LISTEN`` is in place, with True when the previous
            connection broke (False the first time).
        on_lost: called when the connection broke, before reconnecting.
        name: names the listener in the warning logged when it breaks.
        logger: where that warning goes.
    """

    def __init__(
        self,
        config: PostgresConfig,
        channel: str,
        *,
        on_notify: Callable[[str], object],
        on_connected: Callable[[bool], object] = _ignore,
        on_lost: Callable[[], object] = _ignore,
        name: str = "listener",
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.channel = channel
        self._on_notify = on_notify
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._name = name
        self._logger = logger or logging.getLogger("extapi_kit.stores")
        self._task: asyncio.Task[None] | None = None
        #: set once ``LISTEN`` is in place (None before :meth:`start`).
        self.subscribed: asyncio.Event | None = None
        self._closed = False

    async def start(self) -> None:
        """Start listening unless it runs; wait (at most ~1 s) until ``LISTEN`` is in place."""
        event = self.subscribed
        if event is None or self._task is None or self._task.done():
            event = self.subscribed = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), SUBSCRIBE_WAIT)

    async def aclose(self) -> None:
        """Stop listening and close the connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)

    async def _run(self) -> None:
        asyncpg = import_asyncpg()
        config = self.config
        broken = False
        while not self._closed:
            conn = None
            try:
                conn = await asyncpg.connect(config.dsn, timeout=config.connect_timeout)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(self.channel, self._notified)
                self._on_connected(broken)
                broken = False
                if self.subscribed is not None:
                    self.subscribed.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), HEARTBEAT)
                    if not lost.is_set():
                        # A silently dead network never closes the socket: ask, with a deadline.
                        await conn.fetchval("SELECT 1", timeout=config.statement_timeout)
                raise ConnectionError("the LISTEN connection closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._logger.warning("%s lost (%s); reconnecting", self._name, type(exc).__name__)
                self._on_lost()
                broken = True
                await asyncio.sleep(RECONNECT_DELAY)
            finally:
                if conn is not None:
                    conn.terminate()
