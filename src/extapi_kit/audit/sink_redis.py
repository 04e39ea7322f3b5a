"""Audit records in a Redis Stream (``redis://host:6379/0?stream=extapi:audit``).

Each batch is one pipelined ``MULTI``/``XADD``.../``EXEC``, trimmed by length (``MAXLEN ~``) and,
when ``max_age`` is set, by age (``XTRIM MINID ~``). Queries walk the stream newest first with
``XREVRANGE`` and filter client-side; the cursor is a stream id. Stream order is arrival order at
Redis, which equals time order except for records re-sent after a spill.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from extapi_kit._types import Clock
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import AuditFilter, QueryableSink, cutoff_us, split_stream_id
from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.stores._redis import redis_from_url, wrap_redis_error

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisSink"]

DEFAULT_STREAM = "extapi:audit"
DEFAULT_MAXLEN = 1_000_000
_SCAN_CHUNK = 500


_wrap = wrap_redis_error


class RedisSink(QueryableSink):
    """Append audit records to a Redis Stream.

    Args:
        url: ``redis://`` or ``rediss://`` URL (``stream``, ``maxlen`` and ``max_age`` may also be
            given as query parameters).
        stream: the stream key.
        maxlen: approximate maximum stream length (``None``: no length cap).
        max_age: seconds to keep records (``None``: no age trimming).
        clock: epoch-seconds clock used for age trimming and :meth:`prune`.
        client: an existing ``redis.asyncio.Redis`` client to use instead of ``url``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int | None = DEFAULT_MAXLEN,
        max_age: float | None = None,
        clock: Clock = time.time,
        client: Redis | None = None,
    ) -> None:
        parts = urlsplit(url)
        opts = dict(parse_qsl(parts.query))
        try:
            self.stream = opts.pop("stream", stream)
            maxlen_opt = opts.pop("maxlen", None)
            self._maxlen = int(maxlen_opt) if maxlen_opt is not None else maxlen
            age_opt = opts.pop("max_age", None)
            self._max_age = float(age_opt) if age_opt is not None else max_age
        except ValueError as exc:
            raise ConfigurationError(f"invalid redis audit sink option in {url!r}") from exc
        clean = urlunsplit(parts._replace(query=urlencode(opts)))
        self._client = client if client is not None else redis_from_url(clean)
        self._owns_client = client is None
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSink:
        """Create from a ``redis://`` URL.

        Args:
            url: the URL.
            **options: constructor keyword arguments.
        """
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"RedisSink(stream={self.stream!r})"

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """XADD every record in one MULTI/EXEC pipeline, trimming by length and age.

        Args:
            records: the records.
        """
        if not records:
            return
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for rec in records:
                    data = rec.to_json()
                    if self._maxlen is not None:
                        pipe.xadd(self.stream, {"d": data}, maxlen=self._maxlen, approximate=True)
                    else:
                        pipe.xadd(self.stream, {"d": data})
                if self._max_age is not None:
                    min_id = int((self._clock() - self._max_age) * 1000)
                    pipe.xtrim(self.stream, minid=str(max(min_id, 0)), approximate=True)
                await pipe.execute()
        except Exception as exc:
            raise _wrap(exc, self._client) from exc

    async def _query(
        self, flt: AuditFilter, cursor: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        out: list[AuditRecord] = []
        last_id: str | None = None
        after = split_stream_id(cursor)
        if after == (0, 0):
            return out, None  # nothing is older than the first possible id
        upper = f"({after[0]}-{after[1]}" if after is not None else "+"
        try:
            while True:
                entries = await self._client.xrevrange(
                    self.stream, max=upper, min="-", count=_SCAN_CHUNK
                )
                if not entries:
                    return out, None
                for raw_id, fields in entries:
                    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    rec = AuditRecord.from_dict(json.loads((fields or {})[b"d"]))
                    if flt.matches(rec):
                        if len(out) == flt.limit:
                            return out, last_id
                        out.append(rec)
                        last_id = entry_id
                    upper = f"({entry_id}"
        except StoreError:
            raise
        except Exception as exc:
            raise _wrap(exc, self._client) from exc

    async def count(self) -> int:
        """Return the stream length."""
        try:
            return int(await self._client.xlen(self.stream))
        except Exception as exc:
            raise _wrap(exc, self._client) from exc

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Trim entries added before the cut-off (exact ``XTRIM MINID``); return how many.

        Args:
            older_than: a datetime, or an age (timedelta or seconds) before now.
        """
        cut_ms = max(cutoff_us(older_than, self._clock()) // 1000, 0)
        try:
            return int(await self._client.xtrim(self.stream, minid=str(cut_ms)))
        except Exception as exc:
            raise _wrap(exc, self._client) from exc

    async def ping(self) -> bool:
        """Return True when Redis answers PING."""
        try:
            return bool(await self._client.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close the client if this sink created it."""
        if self._owns_client:
            await self._client.aclose()
