"""``extapi-kit audit query`` and ``extapi-kit audit prune``: read and trim the audit trail.

The store is ``--store URL``, else ``$EXTAPI_KIT_AUDIT_STORE``, else ``sqlite:///extapi-kit-audit.db``.
Times are ISO 8601 (naive = UTC) or an age such as ``1h`` / ``30d`` meaning "that long ago".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from extapi_kit._units import parse_duration
from extapi_kit.cli._output import echo, safe
from extapi_kit.cli._progress import progress
from extapi_kit.cli._stores import require_existing
from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:  # loaded when a command runs, so `extapi-kit --help` starts fast
    from extapi_kit.audit import AuditRecord, AuditSink

__all__ = ["DEFAULT_STORE", "STORE_ENV", "parse_time", "register"]

STORE_ENV = "EXTAPI_KIT_AUDIT_STORE"
DEFAULT_STORE = "sqlite:///extapi-kit-audit.db"
_COLUMNS = ("time", "status", "method", "route", "key", "client_ip", "ms", "rejection")


def parse_time(text: str, now: float | None = None) -> datetime:
    """Parse ``--since``/``--until``: ISO 8601 (naive = UTC) or an age like ``90m``, ``7d``.

    Args:
        text: the argument.
        now: the current epoch time (default: ``time.time()``).
    """
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            age = parse_duration(text)
        except ConfigurationError:
            raise ConfigurationError(
                f"invalid time {text!r}: use ISO 8601 (2026-01-31T12:00:00Z) or an age (1h, 30d)"
            ) from None
        return datetime.fromtimestamp((time.time() if now is None else now) - age, tz=UTC)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _store_url(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE)


async def _with_sink(url: str, action: Any) -> Any:
    from extapi_kit.audit import audit_store_from_url

    sink: AuditSink = audit_store_from_url(url)
    try:
        return await action(sink)
    finally:
        await sink.aclose()


def _row(rec: AuditRecord) -> list[str]:
    # Escaped before measuring, so the columns line up with what the terminal shows (M11).
    cells = [
        rec.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        str(rec.status),
        rec.method,
        rec.route or rec.path,
        rec.key_id or "-",
        rec.client_ip or "-",
        f"{rec.latency_ms:.1f}",
        rec.rejection or ("error" if rec.error else "-"),
    ]
    return [safe(cell) for cell in cells]


def _print_table(records: list[AuditRecord], next_cursor: str | None) -> None:
    rows = [list(_COLUMNS), *(_row(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if next_cursor:
        echo(f"(more: --cursor {next_cursor})")


def _query(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "key_id": args.key,
        "route": args.route,
        "method": args.method,
        "status": args.status,
        "since": parse_time(args.since) if args.since else None,
        "until": parse_time(args.until) if args.until else None,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    url = require_existing(_store_url(args), "audit store")  # read-only: never create it

    async def pages(sink: AuditSink) -> tuple[list[AuditRecord], str | None]:
        records, cursor = await sink.query(**kwargs)
        if not args.all:
            return records, cursor
        # Every page, --limit records at a time; a long trail shows progress on a terminal.
        with progress("reading audit records", quiet=args.json) as shown:
            shown.advance(len(records))
            while cursor is not None:
                page, cursor = await sink.query(**{**kwargs, "cursor": cursor})
                records += page
                shown.advance(len(page))
        return records, None

    records, next_cursor = asyncio.run(_with_sink(url, pages))
    if args.json:
        doc = {"records": [r.to_dict() for r in records], "next_cursor": next_cursor}
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print_table(records, next_cursor)
    return 0


def _prune(args: argparse.Namespace) -> int:
    age = parse_duration(args.older_than)
    url = require_existing(_store_url(args), "audit store")  # nothing to prune in no store

    async def prune(sink: AuditSink) -> int:
        # One statement, so no count to show while it runs: the line says it is running.
        with progress(f"pruning audit records older than {args.older_than}", quiet=args.json):
            return int(await sink.prune(age))

    deleted = asyncio.run(_with_sink(url, prune))
    if args.json:
        print(json.dumps({"deleted": deleted}))
    else:
        echo(f"deleted {deleted} audit records older than {args.older_than}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``audit`` command group.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers``.
    """
    parser = subparsers.add_parser("audit", help="query and prune the audit trail")
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION")
    actions.required = True
    store_help = f"audit store URL (default: ${STORE_ENV} or {DEFAULT_STORE})"

    q = actions.add_parser("query", help="list audit records, newest first")
    q.add_argument("--store", help=store_help)
    q.add_argument("--key", help="only this key id")
    q.add_argument("--route", help="only this route template (or path)")
    q.add_argument("--method", help="only this HTTP method")
    q.add_argument("--status", type=int, help="only this status code")
    q.add_argument("--since", help="from this time (ISO 8601 or an age such as 1h)")
    q.add_argument("--until", help="before this time (ISO 8601 or an age)")
    q.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    q.add_argument("--cursor", help="cursor printed with the previous page")
    q.add_argument(
        "--all", action="store_true", help="follow the cursors: every matching record, in pages"
    )
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=_query)

    p = actions.add_parser("prune", help="delete records older than an age")
    p.add_argument("--store", help=store_help)
    p.add_argument("--older-than", required=True, help="age such as 30d or 12h")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_prune)
