"""Write-only audit sinks: JSON lines through stdlib ``logging``, and a user callable."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import AuditFilter, QueryableSink
from extapi_kit.exceptions import StoreError

__all__ = ["AUDIT_LOGGER", "AuditHook", "HookSink", "LoggingSink"]

AUDIT_LOGGER = "extapi_kit.audit"
AuditHook = Callable[[AuditRecord], Awaitable[None] | None]
_HOOK_LOG_INTERVAL = 10.0

logger = logging.getLogger(__name__)


class _WriteOnly(QueryableSink):
    async def _query(
        self, flt: AuditFilter, cursor: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        raise StoreError(f"{type(self).__name__} is write-only and cannot be queried")

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Nothing to prune; returns 0.

        Args:
            older_than: unused.
        """
        return 0

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


class LoggingSink(_WriteOnly):
    """Emit each record as one JSON line on the ``extapi_kit.audit`` logger.

    Args:
        logger_name: the logger to use.
        level: the log level of the records.
    """

    def __init__(self, logger_name: str = AUDIT_LOGGER, *, level: int = logging.INFO) -> None:
        self._logger = logging.getLogger(logger_name)
        self._level = level

    def __repr__(self) -> str:
        return f"LoggingSink({self._logger.name!r})"

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Log each record as compact JSON.

        Args:
            records: the records.
        """
        if not self._logger.isEnabledFor(self._level):
            return
        for rec in records:
            line = rec.to_json(iso=True)
            self._logger.log(self._level, line)


class HookSink(_WriteOnly):
    """Call a user function (sync or async) with every record; its errors are logged, not raised.

    A failing hook never makes the batch spill (the hook is not a store), and its error log is
    throttled to one line per 10 seconds with a count of the failures in between.

    Args:
        hook: ``hook(record)``; may return an awaitable.
    """

    def __init__(self, hook: AuditHook) -> None:
        self._hook = hook
        self.failures = 0
        self._last_log = 0.0
        self._unlogged = 0

    def __repr__(self) -> str:
        return f"HookSink({getattr(self._hook, '__name__', type(self._hook).__name__)})"

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Call the hook for each record.

        Args:
            records: the records.
        """
        for rec in records:
            try:
                result = self._hook(rec)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.failures += 1
                self._unlogged += 1
                now = time.monotonic()
                if now - self._last_log >= _HOOK_LOG_INTERVAL:
                    logger.warning(
                        "audit hook %r failed (%d failures since last report)",
                        self,
                        self._unlogged,
                        exc_info=True,
                    )
                    self._last_log = now
                    self._unlogged = 0
