"""Leaked-key reports: a key found in public is looked up, verified, then revoked or flagged.

What reaches this module is a list of :class:`Finding` (a token and where it was found), from a
secret scanner (:mod:`extapi_kit.keys.leaks_github`, GitHub's secret scanning partner program) or
from an operator (``extapi-kit keys report-leak``). For each token :class:`LeakResponder`:

1. parses it and checks its checksum (:func:`~extapi_kit.keys.format.parse_key`): foreign tokens
   and typos stop here, without touching a store;
2. looks the key up by its id and verifies the secret with the key hasher
   (:meth:`~extapi_kit.keys.service.KeyService.secret_matches`): a token with a known id but a
   wrong secret is a false positive, and nothing happens to the key;
3. acts per configuration (``action``): ``"revoke"`` revokes the key now; ``"flag"`` marks it
   leaked and caps its expiry at ``now + grace`` (never later than it was), so the key keeps
   working for its holder until the grace ends, unless an operator revokes, rotates or
   re-extends it first. A key that is already revoked, expired or rotated out is left alone;
4. records a :class:`LeakReport` (key id, where it was found; never the token), and for a new
   report only: writes an audit record and calls ``on_leak`` (the webhook ``api_key.leaked`` to
   the key's owner, in the example app).

A report's id is derived from the key id, the URL and the source, and the store inserts it only if
absent: the same report sent twice (a replayed request, two workers) revokes, notifies and
audits once. The same key found at another URL is a new report (its owner learns of each place).
The secret itself is only ever held in memory for the duration of the check.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from extapi_kit._types import Clock
from extapi_kit._units import parse_duration
from extapi_kit.audit.record import AuditRecord, new_record_id
from extapi_kit.exceptions import ConfigurationError, InvalidCursorError, InvalidKeyError
from extapi_kit.keys.format import parse_key
from extapi_kit.keys.models import KeyRecord, iso
from extapi_kit.keys.service import KeyService
from extapi_kit.stores import register_store, store_from_url

__all__ = [
    "LEAK_EVENT",
    "Finding",
    "LeakReport",
    "LeakReportStore",
    "LeakResponder",
    "MemoryLeakStore",
    "TokenResult",
    "leak_event_data",
    "leak_store_from_url",
]

logger = logging.getLogger("extapi_kit.keys.leaks")

LEAK_EVENT = "api_key.leaked"
"""The event published (``on_leak``) and audited for every new leak report."""

Action = Literal["revoked", "flagged", "none"]
Label = Literal["true_positive", "false_positive"]

MAX_URL = 2048
MAX_FIELD = 100
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    """One reported token and where it was found (held in memory only; repr hides the token).

    Args:
        token: the token as found.
        type: the scanner's name for the token type.
        url: where it was found (may be empty).
        source: the scanner's source kind (``content``, ``commit``, ``issue_comment``, ...).
    """

    token: str = field(repr=False)
    type: str = ""
    url: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class LeakReport:
    """A confirmed leak of one of our keys, as stored (never the token).

    Args:
        id: ``lk_`` + a digest of key id, URL and source (the same report has the same id).
        key_id: the leaked key's id.
        display_prefix: its safe-to-show prefix.
        owner: its owner, if any.
        url: where it was found.
        source: the scanner's source kind.
        token_type: the scanner's token type name.
        reporter: who reported it (``github``, ``cli``, ...).
        action: what was done: ``revoked``, ``flagged`` or ``none`` (already not valid).
        reported_at: epoch seconds.
        grace_ends_at: when a flagged key stops working (its expiry after flagging).
    """

    id: str
    key_id: str
    display_prefix: str
    owner: str | None
    url: str
    source: str
    token_type: str
    reporter: str
    action: Action
    reported_at: float
    grace_ends_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the stored, JSON-able form."""
        return asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """Return what operators and webhook receivers see (ISO 8601 timestamps)."""
        data = self.to_dict()
        data["reported_at"] = iso(self.reported_at)
        data["grace_ends_at"] = iso(self.grace_ends_at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeakReport:
        """Build a report from :meth:`to_dict` output (unknown fields are ignored).

        Args:
            data: the stored dict.
        """
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def report_id(key_id: str, url: str, source: str) -> str:
    """Return the stable id of the report of one key found at one place.

    Args:
        key_id: the key id.
        url: where it was found.
        source: the source kind.
    """
    digest = hashlib.sha256(f"{key_id}\0{url}\0{source}".encode()).digest()
    return "lk_" + base64.b32encode(digest[:20]).decode().lower()


def encode_cursor(report: LeakReport) -> str:
    """Return the cursor after ``report`` in newest-first order.

    Args:
        report: the last report of a page.
    """
    return base64.urlsafe_b64encode(f"{report.reported_at!r}|{report.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Return ``(reported_at, id)`` of a cursor.

    Args:
        cursor: from :func:`encode_cursor`.

    Raises:
        InvalidCursorError: for anything else.
    """
    try:
        at, _, rid = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().partition("|")
        value = float(at)
    except (ValueError, UnicodeError):
        raise InvalidCursorError("invalid cursor") from None
    if not rid.startswith("lk_") or value != value:
        raise InvalidCursorError("invalid cursor")
    return value, rid


def check_page(limit: int) -> int:
    """Return ``limit`` if it is a valid page size.

    Args:
        limit: 1..1000.
    """
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ConfigurationError(f"limit must be 1-{MAX_PAGE}")
    return limit


@runtime_checkable
class LeakReportStore(Protocol):
    """Storage of leak reports: insert-if-absent, get, newest-first pages."""

    async def add(self, report: LeakReport) -> bool:
        """Insert ``report`` unless one with its id exists; return whether it was inserted.

        Args:
            report: the report.
        """

    async def get(self, report_id: str) -> LeakReport | None:
        """Return a report by id, or None.

        Args:
            report_id: the id.
        """

    async def list(
        self,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[LeakReport], str | None]:
        """Return one page of reports, newest first, and the next cursor (or None).

        Args:
            key_id: only this key's reports.
            owner: only this owner's reports.
            cursor: from a previous page.
            limit: page size (1-1000).
        """

    async def ping(self) -> bool:
        """Return True when the store answers."""

    async def aclose(self) -> None:
        """Release resources."""


def page_of(
    rows: Iterable[LeakReport], cursor: str | None, limit: int
) -> tuple[list[LeakReport], str | None]:
    """Return one newest-first page of ``rows`` (any order) after ``cursor``.

    Args:
        rows: candidate reports, already filtered.
        cursor: from a previous page.
        limit: page size.
    """
    check_page(limit)
    ordered = sorted(rows, key=lambda r: (r.reported_at, r.id), reverse=True)
    if cursor is not None:
        after = decode_cursor(cursor)
        ordered = [r for r in ordered if (r.reported_at, r.id) < after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, encode_cursor(page[-1]) if more and page else None


class MemoryLeakStore:
    """``memory://``: reports in this process, bounded (the oldest are dropped past the cap).

    Args:
        max_reports: reports kept.
    """

    def __init__(self, *, max_reports: int = 100_000) -> None:
        if max_reports < 1:
            raise ConfigurationError("max_reports must be at least 1")
        self._max = max_reports
        self._reports: OrderedDict[str, LeakReport] = OrderedDict()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryLeakStore:
        """Create a store from ``memory://``.

        Args:
            url: the URL.
            **options: ``max_reports``.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryLeakStore({len(self._reports)} reports)"

    async def add(self, report: LeakReport) -> bool:
        """Insert unless present (see :class:`LeakReportStore`).

        Args:
            report: the report.
        """
        if report.id in self._reports:
            return False
        self._reports[report.id] = report
        while len(self._reports) > self._max:
            self._reports.popitem(last=False)
        return True

    async def get(self, report_id: str) -> LeakReport | None:
        """Return a report by id.

        Args:
            report_id: the id.
        """
        return self._reports.get(report_id)

    async def list(
        self,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[LeakReport], str | None]:
        """Return one page, newest first (see :class:`LeakReportStore`).

        Args:
            key_id: key filter.
            owner: owner filter.
            cursor: from a previous page.
            limit: page size.
        """
        rows = (
            r
            for r in self._reports.values()
            if (key_id is None or r.key_id == key_id) and (owner is None or r.owner == owner)
        )
        return page_of(rows, cursor, limit)

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


for _scheme, _target in (
    ("memory", "extapi_kit.keys.leaks:MemoryLeakStore"),
    ("sqlite", "extapi_kit.keys.leaks_store:SQLiteLeakStore"),
    ("postgresql", "extapi_kit.keys.leaks_store:PostgresLeakStore"),
    ("postgres", "extapi_kit.keys.leaks_store:PostgresLeakStore"),
    ("redis", "extapi_kit.keys.leaks_store:RedisLeakStore"),
    ("rediss", "extapi_kit.keys.leaks_store:RedisLeakStore"),
    ("redis+cluster", "extapi_kit.keys.leaks_store:RedisLeakStore"),
    ("rediss+cluster", "extapi_kit.keys.leaks_store:RedisLeakStore"),
    ("redis+sentinel", "extapi_kit.keys.leaks_store:RedisLeakStore"),
    ("rediss+sentinel", "extapi_kit.keys.leaks_store:RedisLeakStore"),
):
    register_store("leaks", _scheme, _target)


def leak_store_from_url(url: str, **options: Any) -> LeakReportStore:
    """Create a leak report store from a URL (``memory://``, ``sqlite:///leaks.db``, ...).

    Args:
        url: the store URL.
        **options: passed to the store's constructor.
    """
    store: LeakReportStore = store_from_url("leaks", url, **options)
    return store


@dataclass(frozen=True, slots=True)
class TokenResult:
    """The outcome for one finding.

    Args:
        finding: the finding (its token stays in memory only).
        label: ``true_positive`` (one of our keys, secret verified) or ``false_positive``.
        report: the stored report of a true positive, else None.
        new: whether this call created the report (and so acted and notified).
    """

    finding: Finding
    label: Label
    report: LeakReport | None = None
    new: bool = False


LeakCallback = Callable[[LeakReport, KeyRecord], Any]
"""``on_leak(report, record)``, sync or async, once per new report (e.g. publish a webhook)."""


class LeakResponder:
    """Check reported tokens against the key store and act on the ones that are ours.

    Args:
        keys: the key service (store, prefix, hasher).
        store: a :class:`LeakReportStore` or a store URL.
        action: ``"revoke"`` (default) or ``"flag"`` (grace, then the key stops working).
        grace: how long a flagged key keeps working (seconds or ``"24h"``).
        audit: an audit sink that receives one record per new report, or None.
        on_leak: callback for each new report (the ``api_key.leaked`` webhook).
        max_tokens: most findings handled in one call.
        concurrency: findings checked at once (each may cost one hash verification).
        clock: returns epoch seconds.
    """

    def __init__(
        self,
        keys: KeyService,
        store: LeakReportStore | str = "memory://",
        *,
        action: str = "revoke",
        grace: float | str = "24h",
        audit: Any = None,
        on_leak: LeakCallback | None = None,
        max_tokens: int = 1000,
        concurrency: int = 8,
        clock: Clock = time.time,
    ) -> None:
        if action not in ("revoke", "flag"):
            raise ConfigurationError("action must be 'revoke' or 'flag'")
        if max_tokens < 1 or concurrency < 1:
            raise ConfigurationError("max_tokens and concurrency must be at least 1")
        self.keys = keys
        self._owns_store = isinstance(store, str)
        self.store: LeakReportStore = (
            leak_store_from_url(store) if isinstance(store, str) else store
        )
        self.action = action
        self.grace = parse_duration(grace)
        self.audit = audit
        self.on_leak = on_leak
        self.max_tokens = max_tokens
        self._concurrency = concurrency
        self._clock = clock

    def __repr__(self) -> str:
        return f"LeakResponder(action={self.action!r}, store={self.store!r})"

    async def handle(self, findings: Sequence[Finding], *, reporter: str) -> list[TokenResult]:
        """Check every finding and act on the true positives; return one result per finding.

        Args:
            findings: the reported tokens (at most ``max_tokens``).
            reporter: who reports (``github``, ``cli``); recorded on the reports.

        Raises:
            ConfigurationError: more than ``max_tokens`` findings.
            StoreError: the key or report store failed (nothing was half-done on that token
                that a retry would not finish).
        """
        if len(findings) > self.max_tokens:
            raise ConfigurationError(f"at most {self.max_tokens} tokens per report")
        limiter = asyncio.Semaphore(self._concurrency)
        # The same token listed twice (or at two URLs) is verified once.
        checked: dict[str, asyncio.Task[KeyRecord | None]] = {}

        async def check(token: str) -> KeyRecord | None:
            async with limiter:
                return await self._ours(token)

        async def one(finding: Finding) -> TokenResult:
            task = checked.get(finding.token)
            if task is None:
                task = checked[finding.token] = asyncio.ensure_future(check(finding.token))
            record = await task
            if record is None:
                return TokenResult(finding, "false_positive")
            report, new = await self._act(record, finding, reporter)
            return TokenResult(finding, "true_positive", report, new)

        return list(await asyncio.gather(*(one(f) for f in findings)))

    async def report(
        self, token: str, *, url: str = "", source: str = "manual", reporter: str = "cli"
    ) -> TokenResult:
        """Report one token by hand (what ``extapi-kit keys report-leak`` calls).

        Args:
            token: the key that leaked (never stored or logged).
            url: where it was found.
            source: where, as a kind (``manual`` by default).
            reporter: recorded on the report.
        """
        finding = Finding(token=token, type="extapi_kit_api_key", url=url, source=source)
        (result,) = await self.handle([finding], reporter=reporter)
        return result

    async def _ours(self, token: str) -> KeyRecord | None:
        try:
            parsed = parse_key(token, prefix=self.keys.prefix, max_length=self.keys.max_key_length)
        except InvalidKeyError:
            return None  # foreign token, typo or garbage: no store, no hash
        record = await self.keys.store.get(parsed.key_id)
        if record is None:
            return None
        if not await self.keys.secret_matches(record, token):
            logger.info("leak report names key %s with a wrong secret: ignored", record.id)
            return None
        return record

    async def _act(
        self, record: KeyRecord, finding: Finding, reporter: str
    ) -> tuple[LeakReport, bool]:
        url, source = _clip(finding.url, MAX_URL), _clip(finding.source, MAX_FIELD)
        rid = report_id(record.id, url, source)
        existing = await self.store.get(rid)
        if existing is not None:
            return existing, False
        now = self._clock()
        action: Action = "none"
        if record.is_valid(now) and record.rotated_to is None:
            # Both are idempotent: a concurrent duplicate acts the same way, and only the one
            # whose report insert wins notifies and audits (below).
            record = await self.keys.mark_leaked(
                record.id, revoke=self.action == "revoke", grace=self.grace
            )
            action = "revoked" if self.action == "revoke" else "flagged"
        report = LeakReport(
            id=rid,
            key_id=record.id,
            display_prefix=record.display_prefix,
            owner=record.owner,
            url=url,
            source=source,
            token_type=_clip(finding.type, MAX_FIELD),
            reporter=reporter,
            action=action,
            reported_at=now,
            grace_ends_at=record.expires_at if action == "flagged" else None,
        )
        if not await self.store.add(report):
            stored = await self.store.get(rid)
            return stored or report, False
        logger.warning(
            "API key %s was found in public (%s); action: %s", record.id, source or "-", action
        )
        await self._audit(report)
        await self._notify(report, record)
        return report, True

    async def _audit(self, report: LeakReport) -> None:
        if self.audit is None:
            return
        now_us = int(self._clock() * 1_000_000)
        entry = AuditRecord(
            timestamp_us=now_us,
            request_id=report.id,
            method="LEAK",
            path=f"/keys/{report.key_id}/leaks",
            key_id=report.key_id,
            key_prefix=report.display_prefix,
            owner=report.owner,
            protocol="event",
            extra={
                "event": LEAK_EVENT,
                "report_id": report.id,
                "action": report.action,
                "url": report.url,
                "source": report.source,
                "reporter": report.reporter,
            },
            id=new_record_id(),
        )
        try:
            await self.audit.write_batch([entry])
        except Exception as exc:  # the key was acted on; the report row is the durable trace
            logger.error("could not audit leak report %s: %s", report.id, type(exc).__name__)

    async def _notify(self, report: LeakReport, record: KeyRecord) -> None:
        if self.on_leak is None:
            return
        try:
            result = self.on_leak(report, record)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_leak callback failed for report %s", report.id)

    async def aclose(self) -> None:
        """Close the report store if this responder created it."""
        if self._owns_store:
            await self.store.aclose()


def leak_event_data(report: LeakReport, record: KeyRecord) -> dict[str, Any]:
    """Return the payload of the ``api_key.leaked`` webhook (names the owner: Z8 scoping).

    Args:
        report: the new report.
        record: the key after the action.
    """
    return {
        "report_id": report.id,
        "key_id": report.key_id,
        "display_prefix": report.display_prefix,
        "owner": report.owner,
        "url": report.url,
        "source": report.source,
        "action": report.action,
        "reported_at": iso(report.reported_at),
        "grace_ends_at": iso(report.grace_ends_at),
        "status": record.status(report.reported_at),
    }


def _clip(value: str, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""
