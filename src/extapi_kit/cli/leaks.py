"""``extapi-kit keys report-leak``: report a leaked key by hand, as a secret scanner would.

The key is read from standard input (or a hidden prompt on a terminal) by default, so it never
lands in the shell history or the process list; ``KEY`` as an argument is accepted too. The key
is checked like a scanner's report (checksum, key id, secret against the stored hash), then
revoked (default) or flagged with a grace period; the report is stored, audited and published as
``api_key.leaked`` when a webhook store is given. Nothing but the key id is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from typing import Any

from extapi_kit.cli._output import echo, safe
from extapi_kit.exceptions import ConfigurationError

__all__ = ["add_report_leak"]

DEFAULT_LEAK_STORE_ENV = "EXTAPI_KIT_LEAK_STORE"


def _read_key(args: argparse.Namespace) -> str:
    if args.key and args.key != "-":
        return str(args.key).strip()
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass("leaked key (not echoed): ").strip()
    return sys.stdin.readline().strip() if sys.stdin is not None else ""


def _run(args: argparse.Namespace) -> int:
    from extapi_kit.cli.keys import _service, _webhook_url
    from extapi_kit.keys.leaks import LeakResponder, leak_event_data

    token = _read_key(args)
    if not token:
        raise ConfigurationError("no key given (pass it on standard input or as KEY)")

    async def main() -> int:
        hooks: Any = None
        audit: Any = None
        on_leak = None
        url = _webhook_url(args)
        if url:
            from extapi_kit.webhooks import publish_event, webhook_store_from_url

            hooks = store = webhook_store_from_url(url)

            async def on_leak(report: Any, record: Any) -> None:
                data = leak_event_data(report, record)
                await publish_event(store, "api_key.leaked", data, event_id="evt_" + report.id)

        audit_url = args.audit_store or os.environ.get("EXTAPI_KIT_AUDIT_STORE")
        if audit_url:
            from extapi_kit.audit import audit_store_from_url

            audit = audit_store_from_url(audit_url)
        svc = _service(args)
        leak_url = (
            args.leak_store
            or os.environ.get(DEFAULT_LEAK_STORE_ENV)
            or args.store
            or os.environ.get("EXTAPI_KIT_STORE")
            or "sqlite:///extapi-kit.db"
        )
        responder = LeakResponder(
            svc,
            leak_url,
            action=args.action,
            grace=args.grace,
            audit=audit,
            on_leak=on_leak,
        )
        try:
            result = await responder.report(token, url=args.url, source=args.source)
        finally:
            await responder.aclose()
            await svc.aclose()
            for closable in (hooks, audit):
                if closable is not None:
                    await closable.aclose()
        report = result.report
        if args.json:
            out: dict[str, Any] = {"label": result.label, "new": result.new}
            out["report"] = report.public_dict() if report is not None else None
            print(json.dumps(out, indent=2))
        elif report is None:
            echo("not one of our keys (unknown id, wrong checksum or wrong secret): nothing done")
        else:
            when = report.grace_ends_at
            what = {
                "revoked": f"revoked key {safe(report.key_id)}",
                "flagged": f"flagged key {safe(report.key_id)}; it stops working at "
                + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when or 0)),
                "none": f"key {safe(report.key_id)} was not valid any more: nothing to revoke",
            }[report.action]
            echo(what + ("" if result.new else " (already reported)"))
        return 0 if report is not None else 1

    return asyncio.run(main())


def add_report_leak(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``keys report-leak`` to the ``keys`` group.

    Args:
        sub: the ``keys`` group's subparsers.
        common: the group's shared options (``--store``, ``--hasher``, ``--prefix``, ...).
    """
    p = sub.add_parser(
        "report-leak",
        parents=[common],
        help="report a leaked key: revoke or flag it, notify its owner",
        description="Reads the key from standard input (or a hidden prompt) unless KEY is given, "
        "so it stays out of your shell history.",
    )
    p.add_argument("key", nargs="?", help="the leaked key (default: read from standard input)")
    p.add_argument("--url", default="", help="where it was found")
    p.add_argument("--source", default="manual", help="what kind of place (default manual)")
    p.add_argument(
        "--action",
        choices=("revoke", "flag"),
        default="revoke",
        help="revoke now (default), or flag: the key works until --grace has passed",
    )
    p.add_argument("--grace", default="24h", help="grace of a flagged key (default 24h)")
    p.add_argument(
        "--leak-store",
        help=f"leak report store URL (default ${DEFAULT_LEAK_STORE_ENV}, else the key store)",
    )
    p.add_argument(
        "--audit-store", help="audit sink URL for the report (default $EXTAPI_KIT_AUDIT_STORE)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run)
