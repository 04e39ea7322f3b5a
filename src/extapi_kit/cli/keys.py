"""``extapi-kit keys``: create, list, show, update, rotate and revoke API keys.

The store comes from ``--store URL``, else ``$EXTAPI_KIT_STORE``, else ``sqlite:///extapi-kit.db``
in the working directory. New keys are hashed with argon2id at the same defaults the server uses;
``--hasher hmac`` hashes with HMAC-SHA256 and the pepper in ``$EXTAPI_KIT_PEPPER`` (the server must
then be given the same ``HmacHasher``). A new key is printed once, on stdout; a reminder goes to
stderr so ``--json`` output stays machine-readable.

``show`` and ``list`` add each key's usage (requests today and this month, UTC, and quota use)
from the usage store: ``--usage-store URL``, else ``$EXTAPI_KIT_USAGE_STORE``, else the key store
(the usage tables are prefixed, so they can share its file), as ``extapi-kit usage`` resolves it.
An empty or unreadable usage store shows zeros.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from extapi_kit.cli._output import echo, safe
from extapi_kit.cli._progress import progress
from extapi_kit.cli._stores import require_existing
from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:  # loaded when a command runs, so `extapi-kit --help` starts fast
    from extapi_kit.keys.hashing import Hasher
    from extapi_kit.keys.models import KeyRecord
    from extapi_kit.keys.service import KeyService

__all__ = ["duration_arg", "grant_args", "key_id_arg", "quota_args", "register"]

DEFAULT_STORE = "sqlite:///extapi-kit.db"
_ID_HELP = "the key id, or the whole key (its id is derived; the secret is never printed)"
_WARNING = "Store this key now: it is shown only once and cannot be recovered."


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"invalid {what} {item!r}: use NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def grant_args(values: list[str] | None) -> dict[str, list[str]]:
    """Parse repeated ``--grant TYPE=ID,ID`` options (keys and webhook endpoints).

    Args:
        values: the option's values, or None.
    """
    return {
        k: [i.strip() for i in v.split(",") if i.strip()]
        for k, v in _pairs(values, "grant").items()
    }


def quota_args(values: list[str] | None) -> dict[str, Any]:
    """Parse repeated ``--quota PERIOD=N`` options; the key service validates the result.

    Args:
        values: the option's values, or None.
    """
    out: dict[str, Any] = {}
    for period, limit in _pairs(values, "quota").items():
        # Whole numbers become ints; anything else is passed on for the service to refuse
        # with a message naming quota.<period>.
        out[period] = int(limit) if limit.isascii() and limit.isdigit() else limit
    return out


def duration_arg(value: str, option: str, *, allow_zero: bool = False) -> str:
    """Refuse a duration option given as a bare number: ``--expires-in 30`` is 30 what?

    A unit is required (``30d``, ``12h``, ``3600s``) because a bare number silently meant
    seconds (issue 18 §5); ``0`` stays accepted where zero means "none" (``--grace 0``).

    Args:
        value: the option's text.
        option: the option name, for the message.
        allow_zero: accept a bare ``0``.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return value  # has a unit (or is invalid: the service names the duration error)
    if allow_zero and number == 0:
        return value
    raise ConfigurationError(
        f"{option} {text[:20]!r}: a duration needs a unit, e.g. 30d, 12h or 3600s"
    )


def key_id_arg(value: str) -> str:
    """Return the key id named by ``value``: a key id, or a whole key (its id is derived).

    Anything else is refused without repeating it: a mistyped or truncated key still holds
    most of a secret, and a message is copied to terminals, logs and tickets (issue 18 §5).

    Args:
        value: what the operator typed.
    """
    from extapi_kit.exceptions import InvalidKeyError
    from extapi_kit.keys.format import is_key_id, parse_key

    value = value.strip()
    if is_key_id(value):
        return value
    try:
        # Any prefix: the checksum, not the prefix, tells a key from noise.
        return parse_key(value, prefix=value.partition("_")[0]).key_id
    except (InvalidKeyError, ConfigurationError):
        pass
    raise ConfigurationError(
        "not a key id (22 letters and digits) or a whole API key with a valid checksum"
        " (the value is not repeated: it may hold a secret)"
    )


def _hasher(args: argparse.Namespace) -> Hasher:
    from extapi_kit.keys.hashing import Argon2Hasher, HmacHasher

    if args.hasher == "hmac":
        pepper = os.environ.get("EXTAPI_KIT_PEPPER")
        if not pepper:
            raise ConfigurationError("--hasher hmac needs the pepper in $EXTAPI_KIT_PEPPER")
        return HmacHasher(pepper, pepper_id=os.environ.get("EXTAPI_KIT_PEPPER_ID", "1"))
    return Argon2Hasher()


def _service(
    args: argparse.Namespace, on_event: Any = None, *, read_only: bool = False
) -> KeyService:
    from extapi_kit.keys.service import KeyService

    url = args.store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE
    if read_only:
        require_existing(url, "key store")
    plans = None
    if getattr(args, "plan", None) is not None or getattr(args, "no_plan", False):
        # Only a command that assigns a plan opens the plan store (issue 20).
        from extapi_kit.cli.plans import plan_service

        plans = plan_service(args)
    return KeyService(url, hasher=_hasher(args), prefix=args.prefix, on_event=on_event, plans=plans)


async def _usage(args: argparse.Namespace, records: list[KeyRecord]) -> dict[str, Any]:
    from extapi_kit.cli.usage import key_usage_summaries, usage_store_url

    keys_url = args.store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE
    return await key_usage_summaries(usage_store_url(args.usage_store, keys_url), records)


def _usage_lines(usage: dict[str, Any]) -> dict[str, Any]:
    lines: dict[str, Any] = {
        "requests today": usage["today"],
        f"requests {usage['month_id']}": usage["month"],
    }
    for period, q in usage.get("quota", {}).items():
        lines[f"quota {period}"] = (
            f"{q['used']} of {q['limit']} used, {q['remaining']} left, resets {q['resets_at']}"
        )
    return lines


def _print_record(data: dict[str, Any]) -> None:
    usage = data.pop("usage", None)
    if usage is not None:
        data.update(_usage_lines(usage))
    for name, value in data.items():
        if isinstance(value, list | dict):
            value = json.dumps(value) if value else "-"
        echo(f"{name:20} {'-' if value is None else value}")


def _output(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_record(data)


def _print_created(args: argparse.Namespace, record: KeyRecord, key: str, now: float) -> None:
    if args.json:
        print(json.dumps({"key": key, **record.public_dict(now)}, indent=2))
    else:
        echo(key)
        echo(f"key id {record.id} ({record.name}, env {record.env})", file=sys.stderr)
    echo(_WARNING, file=sys.stderr)


async def _create(svc: KeyService, args: argparse.Namespace) -> None:
    record, key = await svc.create(
        args.name,
        env=args.env,
        description=args.description or "",
        owner=args.owner,
        scopes=args.scopes or "",
        grants=grant_args(args.grant),
        rate_limits=_pairs(args.rate_limit, "rate limit"),
        allowed_cidrs=args.cidrs,
        quota=quota_args(args.quota),
        expires_in=None
        if args.expires_in is None
        else duration_arg(args.expires_in, "--expires-in"),
        plan=args.plan,
    )
    _print_created(args, record, key, time.time())


async def _list(svc: KeyService, args: argparse.Namespace) -> None:
    records: list[KeyRecord] = []
    cursor = None
    with progress("listing keys", quiet=args.json) as shown:
        while True:
            page, cursor = await svc.list(
                owner=args.owner, env=args.env, status=args.status, cursor=cursor, limit=500
            )
            records += page
            shown.advance(len(page))
            if cursor is None:
                break
    records.sort(key=lambda r: (r.created_at, r.id))
    now = time.time()
    usage = await _usage(args, records)
    if args.json:
        print(json.dumps([{**r.public_dict(now), "usage": usage[r.id]} for r in records], indent=2))
        return
    echo(f"{'ID':24}{'NAME':20}{'ENV':8}{'STATUS':10}{'OWNER':14}{'TODAY':>8}{'MONTH':>9}  SCOPES")
    for r in records:
        # Escaped before cutting to the column width, so the columns stay aligned (M11).
        name, owner = safe(r.name), safe(r.owner or "-")
        u = usage[r.id]
        month = (
            f"{u['month']}/{u['quota']['monthly']['limit']}"
            if "monthly" in u.get("quota", {})
            else str(u["month"])
        )
        echo(
            f"{r.id:24}{name[:19]:20}{r.env:8}{r.status(now):10}{owner[:13]:14}"
            f"{u['today']:>8}{month:>9}  {','.join(r.scopes)}"
        )


async def _show(svc: KeyService, args: argparse.Namespace) -> None:
    record = await svc.get(key_id_arg(args.id))
    data = record.public_dict(time.time())
    data["usage"] = (await _usage(args, [record]))[record.id]
    if not args.activity:
        _output(args, data)
        return
    from extapi_kit.cli._activity import activity_lines, activity_store_url, read_activity

    url = activity_store_url(args.activity_store, args.store)
    data["activity"] = await read_activity(url, record.id)
    if args.json:
        _output(args, data)
        return
    activity = data.pop("activity")
    _print_record(data)
    for line in activity_lines(activity):
        echo(line)


async def _update(svc: KeyService, args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {}
    for name in ("name", "description", "owner", "scopes"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.grant is not None:
        changes["grants"] = grant_args(args.grant)
    if args.rate_limit is not None:
        changes["rate_limits"] = _pairs(args.rate_limit, "rate limit")
    if args.cidrs is not None:
        changes["allowed_cidrs"] = args.cidrs
    if args.quota is not None:
        changes["quota"] = quota_args(args.quota)
    if args.plan is not None:
        changes["plan"] = args.plan
    elif args.no_plan:
        changes["plan"] = None
    if args.no_expiry:
        changes["expires_at"] = None
    elif args.expires_in is not None:
        # bounded by the service (M7)
        changes["expires_in"] = duration_arg(args.expires_in, "--expires-in")
    if not changes:
        raise ConfigurationError("nothing to update: give at least one option")
    data = (await svc.update(key_id_arg(args.id), **changes)).public_dict(time.time())
    _output(args, data)


async def _rotate(svc: KeyService, args: argparse.Namespace) -> None:
    old_id = key_id_arg(args.id)
    record, key = await svc.rotate(
        old_id, grace=duration_arg(args.grace, "--grace", allow_zero=True)
    )
    _print_created(args, record, key, time.time())
    if not args.json:
        echo(f"the old key {old_id} stays valid for {args.grace}", file=sys.stderr)


async def _revoke(svc: KeyService, args: argparse.Namespace) -> None:
    key_id = key_id_arg(args.id)
    data = (await svc.revoke(key_id)).public_dict(time.time())
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        echo(f"revoked {key_id}")


def _webhook_url(args: argparse.Namespace) -> str | None:
    url = getattr(args, "webhook_store", None) or os.environ.get("EXTAPI_KIT_WEBHOOK_STORE")
    return str(url) if url else None


def _handler(
    fn: Callable[[KeyService, argparse.Namespace], Awaitable[None]], *, read_only: bool = False
) -> Any:
    def run(args: argparse.Namespace) -> int:
        async def main() -> None:
            hooks = None
            on_event = None
            # Read-only commands publish no event, so they open no webhook store either.
            url = None if read_only else _webhook_url(args)
            if url:
                # Key changes made here reach integrators like server-side ones: the event is
                # written to the webhook store, and the server's dispatcher delivers it.
                from extapi_kit.webhooks import publish_event, webhook_store_from_url

                hooks = store = webhook_store_from_url(url)

                async def on_event(kind: str, record: KeyRecord) -> None:
                    await publish_event(store, kind, record.public_dict(time.time()))

            svc = _service(args, on_event, read_only=read_only)
            try:
                await fn(svc, args)
            finally:
                await svc.aclose()
                if svc.plans is not None:
                    await svc.plans.aclose()
                if hooks is not None:
                    await hooks.aclose()

        asyncio.run(main())
        return 0

    return run


def _settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description")
    parser.add_argument("--owner", help="owner or tenant id")
    parser.add_argument(
        "--scopes",
        # The keys feature's one scope rule (parse_scopes), applied by the service (issue 18 §4).
        help="lowercase scopes separated by commas or spaces, e.g. 'projects:read,projects:write'",
    )
    parser.add_argument(
        "--expires-in", help="a duration with a unit: 30d, 12h, 3600s (a bare number is refused)"
    )
    parser.add_argument(
        "--grant", action="append", help="TYPE=ID,ID (repeatable), e.g. projects=7,9"
    )
    parser.add_argument(
        "--rate-limit", action="append", help="CLASS=RATE (repeatable), e.g. read=500/minute"
    )
    parser.add_argument("--cidrs", help="comma-separated networks the key may be used from")
    parser.add_argument(
        "--quota",
        action="append",
        help="PERIOD=N (repeatable; monthly or daily), e.g. monthly=10000",
    )
    parser.add_argument(
        "--plan", help="put the key on this plan (tier); see `extapi-kit plans list`"
    )
    parser.add_argument(
        "--plans-store",
        help="plan store URL (default $EXTAPI_KIT_PLANS_STORE, else the key store)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers: Any) -> None:
    """Add the ``keys`` command group.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", help=f"key store URL (default $EXTAPI_KIT_STORE or {DEFAULT_STORE})"
    )
    common.add_argument(
        "--hasher",
        choices=("argon2", "hmac"),
        default="argon2",
        help="how new secrets are hashed: argon2 (default) or hmac (pepper in $EXTAPI_KIT_PEPPER;"
        " the server needs the same HmacHasher)",
    )
    common.add_argument(
        "--webhook-store",
        help="publish api_key.* events to this webhook store (default $EXTAPI_KIT_WEBHOOK_STORE;"
        " unset: no events)",
    )
    common.add_argument("--prefix", default="xk", help="key prefix (default xk)")
    keys = subparsers.add_parser("keys", help="manage API keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("create", parents=[common], help="create a key (printed once)")
    p.add_argument("--name", required=True, help="a label for people, e.g. the client's name")
    p.add_argument("--env", default=None, help="environment segment (default live)")
    _settings(p)
    p.set_defaults(handler=_handler(_create))

    usage = argparse.ArgumentParser(add_help=False)
    usage.add_argument(
        "--usage-store",
        help="usage store URL (default $EXTAPI_KIT_USAGE_STORE, else the key store)",
    )

    p = sub.add_parser("list", parents=[common, usage], help="list keys with today's usage")
    p.add_argument("--owner")
    p.add_argument("--env")
    p.add_argument("--status", choices=("active", "rotating", "rotated", "expired", "revoked"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler(_list, read_only=True))

    p = sub.add_parser(
        "show", parents=[common, usage], help="show one key and its usage (never its secret)"
    )
    p.add_argument("id", help=_ID_HELP)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--activity",
        action="store_true",
        help="add the key's last 30 days: client IPs, user agents, error rate, refusals",
    )
    p.add_argument(
        "--activity-store",
        help="key analytics store URL (default $EXTAPI_KIT_ACTIVITY_STORE, else the key store)",
    )
    p.set_defaults(handler=_handler(_show, read_only=True))

    p = sub.add_parser("update", parents=[common], help="change a key's settings")
    p.add_argument("id", help=_ID_HELP)
    p.add_argument("--name", help="a new label")
    p.add_argument("--no-expiry", action="store_true", help="remove the expiry")
    p.add_argument(
        "--no-plan", action="store_true", help="take the key off its plan (its owner's applies)"
    )
    _settings(p)
    p.set_defaults(handler=_handler(_update))

    p = sub.add_parser(
        "rotate", parents=[common], help="replace a key, keeping the old one for a grace period"
    )
    p.add_argument("id", help=_ID_HELP)
    p.add_argument("--grace", default="0", help="how long the old key stays valid, e.g. 24h")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler(_rotate))

    p = sub.add_parser("revoke", parents=[common], help="revoke a key now")
    p.add_argument("id", help=_ID_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler(_revoke))

    # After the lifecycle commands, so `keys --help` reads create, list, show, ... usage.
    from extapi_kit.cli.leaks import add_report_leak

    add_report_leak(sub, common)
    from extapi_kit.cli.usage import add_keys_usage

    add_keys_usage(sub)
