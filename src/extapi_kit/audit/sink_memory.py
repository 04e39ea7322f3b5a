"""An in-process audit sink (``memory://``): for tests, demos and single-process tools."""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from extapi_kit._types import Clock
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import (
    AuditFilter,
    QueryableSink,
    cutoff_us,
    split_cursor,
)
from extapi_kit.exceptions import ConfigurationError

__all__ = ["DEFAULT_MAXLEN", "MemorySink"]

DEFAULT_MAXLEN = 100_000


class MemorySink(QueryableSink):
    """Keep audit records in memory, ordered by arrival time, queryable like the other sinks.

    Args:
        maxlen: keep at most this many records (the oldest are discarded); None = unbounded.
            The default bounds memory when ``memory://`` is left as the middleware's sink.
        clock: epoch-seconds clock used by :meth:`prune` with an age.
    """

    def __init__(self, *, maxlen: int | None = DEFAULT_MAXLEN, clock: Clock = time.time) -> None:
        self._rows: list[tuple[int, int, AuditRecord]] = []
        self._ids: set[str] = set()
        self._seq = 0
        self._maxlen = maxlen
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemorySink:
        """Create from ``memory://`` or ``memory://?maxlen=1000``.

        Args:
            url: the URL.
            **options: constructor keyword arguments.
        """
        query = dict(parse_qsl(urlsplit(url).query))
        if "maxlen" in query:
            try:
                options.setdefault("maxlen", int(query["maxlen"]))
            except ValueError:
                raise ConfigurationError(f"invalid maxlen in {url!r}") from None
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemorySink({len(self._rows)} records)"

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def records(self) -> list[AuditRecord]:
        """Every stored record, oldest first."""
        return [row[2] for row in self._rows]

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Store records, ignoring ids already stored.

        Args:
            records: the records.
        """
        for rec in records:
            if rec.id and rec.id in self._ids:
                continue
            self._seq += 1
            row = (rec.timestamp_us, self._seq, rec)
            if not self._rows or row[:2] >= self._rows[-1][:2]:
                self._rows.append(row)
            else:
                bisect.insort(self._rows, row, key=lambda r: (r[0], r[1]))
            if rec.id:
                self._ids.add(rec.id)
        if self._maxlen is not None and len(self._rows) > self._maxlen:
            for _ts, _seq, old in self._rows[: len(self._rows) - self._maxlen]:
                self._ids.discard(old.id)
            del self._rows[: len(self._rows) - self._maxlen]

    async def _query(
        self, flt: AuditFilter, cursor: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        after = split_cursor(cursor)
        out: list[AuditRecord] = []
        last: tuple[int, int] | None = None
        for ts, seq, rec in reversed(self._rows):
            if after is not None and (ts, seq) >= after:
                continue
            if flt.since_us is not None and ts < flt.since_us:
                break
            if not flt.matches(rec):
                continue
            if len(out) == flt.limit:
                return out, f"{last[0]}.{last[1]}" if last else None
            out.append(rec)
            last = (ts, seq)
        return out, None

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Delete records that arrived before the cut-off; return how many.

        Args:
            older_than: a datetime, or an age (timedelta or seconds) before now.
        """
        cut = cutoff_us(older_than, self._clock())
        idx = bisect.bisect_left(self._rows, cut, key=lambda r: r[0])
        for _ts, _seq, old in self._rows[:idx]:
            self._ids.discard(old.id)
        del self._rows[:idx]
        return idx

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
