"""``extapi-kit usage``: show a key's (or owner's) usage and set a key's quota.

The usage store comes from ``--store URL``, else ``$EXTAPI_KIT_USAGE_STORE``, else
``$EXTAPI_KIT_STORE``, else ``sqlite:///extapi-kit.db`` (the usage tables are prefixed, so they can
share the keys' file). ``set-quota`` changes the key record through the key store
(``--keys-store``, else ``$EXTAPI_KIT_STORE``, else the same default); running servers see the new
quota once their key cache entry expires.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from extapi_kit.cli._output import echo
from extapi_kit.cli._stores import missing_sqlite_file, require_existing
from extapi_kit.exceptions import ConfigurationError, ExtAPIKitError

if TYPE_CHECKING:  # loaded when a command runs, so `extapi-kit --help` starts fast
    from extapi_kit.keys.models import KeyRecord
    from extapi_kit.usage import UsageTracker

__all__ = ["add_keys_usage", "key_usage_summaries", "register", "sparkline", "usage_store_url"]

DEFAULT_STORE = "sqlite:///extapi-kit.db"
_QUOTA_FIELDS = ("limit", "used", "remaining", "resets_at")
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Return a one-line unicode bar chart of ``values`` (spaces for zero).

    Args:
        values: non-negative counts.
    """
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(" " if v <= 0 else _BARS[min(7, (v * 8 - 1) // top)] for v in values)


def usage_store_url(explicit: str | None, keys_url: str | None = None) -> str:
    """Return the usage store URL the CLI reads.

    ``explicit`` (a ``--store``/``--usage-store`` option), else ``$EXTAPI_KIT_USAGE_STORE``, else
    the key store (``keys_url``, else ``$EXTAPI_KIT_STORE``), else ``sqlite:///extapi-kit.db``.

    Args:
        explicit: the URL given on the command line, if any.
        keys_url: the key store URL a ``keys`` command was given, if any.
    """
    return str(
        explicit
        or os.environ.get("EXTAPI_KIT_USAGE_STORE")
        or keys_url
        or os.environ.get("EXTAPI_KIT_STORE")
        or DEFAULT_STORE
    )


def _usage_url(args: argparse.Namespace) -> str:
    return usage_store_url(args.store)


def _absent(url: str) -> bool:
    # A SQLite file that does not exist holds no usage; reading must not create it.
    return missing_sqlite_file(url) is not None


async def _summaries(tracker: UsageTracker, records: Sequence[KeyRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in records:
        (today,) = await tracker.get_usage(r.id, 1)
        month = await tracker.get_month(r.id)
        entry: dict[str, Any] = {
            "today": today["total"],
            "month": month["total"],
            "month_id": month["month"],
        }
        quotas = await tracker.quota_status(r.id, r.quota)
        if quotas:
            entry["quota"] = {q["period"]: {k: q[k] for k in _QUOTA_FIELDS} for q in quotas}
        out[r.id] = entry
    return out


async def key_usage_summaries(url: str, records: Sequence[KeyRecord]) -> dict[str, Any]:
    """Return each key's requests today and this month (UTC) and its quota use, by key id.

    Each value: ``{today, month, month_id}`` plus ``quota: {period: {limit, used, remaining,
    resets_at}}`` when the key has a quota. An empty or absent store gives zeros; a store that
    cannot be read gives zeros too, with ``"available": false`` and a warning on stderr, so the
    key commands never fail because of usage.

    Args:
        url: the usage store URL.
        records: the keys.
    """
    if not records:
        return {}
    from extapi_kit.usage import UsageTracker

    failed = None
    if not _absent(url):
        tracker = None
        try:
            tracker = UsageTracker(url)
            return await _summaries(tracker, records)
        except ExtAPIKitError as exc:
            failed = exc
        finally:
            if tracker is not None:  # only reads happened: close the store, skip the flush
                with contextlib.suppress(ExtAPIKitError):
                    await tracker.store.aclose()
    empty = UsageTracker("memory://")  # zeros, with the quota limits still shown
    out = await _summaries(empty, records)
    if failed is not None:
        echo(f"extapi-kit: warning: usage unavailable ({failed}); showing zeros", file=sys.stderr)
        for entry in out.values():
            entry["available"] = False
    return out


async def _known_key(args: argparse.Namespace) -> str:
    """``keys usage ID``: the key must exist, like for every other ``keys`` command (exit 1)."""
    from extapi_kit.cli.keys import key_id_arg
    from extapi_kit.keys.service import KeyService

    url = args.keys_store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE
    require_existing(url, "key store", "--keys-store")
    svc = KeyService(url)
    try:
        return (await svc.get(key_id_arg(args.id))).id
    finally:
        await svc.aclose()


async def _collect(args: argparse.Namespace) -> dict[str, Any]:
    from extapi_kit.usage import UsageTracker

    url = _usage_url(args)
    if args.key_view and not args.owner:
        args.id = await _known_key(args)
        if _absent(url):  # a key nobody used yet: zeros, as `keys show` reports them
            url = "memory://"
    else:
        require_existing(url, "usage store")  # read-only: never create it (issue 18 §5)
    tracker = UsageTracker(url)
    try:
        if args.owner:
            days = await tracker.get_owner_usage(args.id, args.days)
            month = await tracker.get_owner_month(args.id)
            return {"owner": args.id, "days": days, "month": month}
        days = await tracker.get_usage(args.id, args.days)
        month = await tracker.get_month(args.id)
        quota = await tracker.quota_used(args.id)
        return {"key_id": args.id, "days": days, "month": month, "quota_used": quota}
    finally:
        await tracker.aclose()


def _print_table(data: dict[str, Any]) -> None:
    days = data["days"]
    who = f"owner {data['owner']}" if "owner" in data else f"key {data['key_id']}"
    totals = [d["total"] for d in days]
    echo(f"usage of {who}, last {len(days)} days (UTC)")
    echo(f"  {sparkline(totals)}  max {max(totals, default=0)}/day")
    echo(
        f"{'date':10}  {'total':>7} {'read':>7} {'write':>7} {'served':>7} {'errors':>7}  rejected"
    )
    for d in days:
        if not d["total"] and not d["rejected"]:
            continue
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(d["rejected"].items())) or "-"
        echo(
            f"{d['date']:10}  {d['total']:>7} {d['read']:>7} {d['write']:>7} "
            f"{d['served']:>7} {d['errors']:>7}  {rejected}"
        )
    m = data["month"]
    echo(f"month {m['month']}: {m['total']} requests ({m['served']} served)")
    for period, used in sorted(data.get("quota_used", {}).items()):
        if used:
            unit = "month" if period == "monthly" else "day"
            echo(f"quota charged this {unit}: {used}")


def _show(args: argparse.Namespace) -> int:
    if args.days < 1 or args.days > 3660:
        raise ConfigurationError("--days must be between 1 and 3660")
    data = asyncio.run(_collect(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_table(data)
    return 0


async def _set_quota(args: argparse.Namespace) -> dict[str, Any]:
    from extapi_kit.keys.service import KeyService

    url = args.keys_store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE
    svc = KeyService(url)
    try:
        record = await svc.get(args.id)
        quota = dict(record.quota)
        if args.clear:
            quota.pop("monthly", None)
            quota.pop("daily", None)
        if args.monthly is not None:
            quota["monthly"] = args.monthly
        if args.daily is not None:
            quota["daily"] = args.daily
        record = await svc.update(args.id, quota=quota)
        return {"key_id": record.id, "quota": dict(record.quota)}
    finally:
        await svc.aclose()


def _set_quota_cmd(args: argparse.Namespace) -> int:
    if args.monthly is None and args.daily is None and not args.clear:
        raise ConfigurationError("give --monthly N, --daily N or --clear")
    for value in (args.monthly, args.daily):
        if value is not None and value < 0:
            raise ConfigurationError("a quota must be a non-negative integer")
    data = asyncio.run(_set_quota(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        echo(f"key {data['key_id']} quota: {json.dumps(data['quota']) if data['quota'] else '-'}")
    return 0


def _add_show(sub: Any, name: str, help_text: str, *, key_view: bool = False) -> None:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("id", help="the key id (or owner id with --owner)")
    if key_view:
        p.add_argument("--keys-store", help="key store URL (default $EXTAPI_KIT_STORE)")
    p.add_argument("--days", type=int, default=30, help="how many days (default 30)")
    p.add_argument("--owner", action="store_true", help="ID is an owner: totals of all its keys")
    p.add_argument("--store", help="usage store URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_show, key_view=key_view)


def add_keys_usage(keys_subparsers: Any) -> None:
    """Add ``keys usage ID [--days 30] [--json]`` to the ``keys`` command group.

    Args:
        keys_subparsers: the ``keys`` group's sub-parsers object.
    """
    _add_show(keys_subparsers, "usage", "show a key's usage by day and month", key_view=True)


def register(subparsers: Any) -> None:
    """Register the ``usage`` command group.

    Args:
        subparsers: the top-level sub-parsers object.
    """
    group = subparsers.add_parser("usage", help="usage counters and quotas")
    sub = group.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_show(sub, "show", "show a key's (or owner's) usage by day and month")
    p = sub.add_parser("set-quota", help="set a key's monthly or daily request quota")
    p.add_argument("id", help="the key id")
    p.add_argument("--monthly", type=int, help="requests (cost units) per UTC month")
    p.add_argument("--daily", type=int, help="requests (cost units) per UTC day")
    p.add_argument("--clear", action="store_true", help="remove the quota")
    p.add_argument("--keys-store", help="key store URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_set_quota_cmd)
