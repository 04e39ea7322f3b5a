"""``extapi-kit credits``: show, set, top up and clear credit balances; create N-use keys.

The credit store comes from ``--store URL``, else ``$EXTAPI_KIT_CREDITS_STORE``, else
``$EXTAPI_KIT_STORE``, else ``sqlite:///extapi-kit.db`` (the credit tables are prefixed, so they
can share the keys' file). A key named with ``--key`` must exist in the key store
(``--keys-store``, else ``$EXTAPI_KIT_STORE``, else the same default). Every change is written
with its log entry (actor ``cli:<user>``, the ``--reason`` given) in one atomic step; running
servers see it on their next request of that key (a key they remembered as unmetered: within
their ``metered_ttl``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from extapi_kit.cli._output import echo
from extapi_kit.cli._stores import require_existing
from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:  # loaded when a command runs, so `extapi-kit --help` starts fast
    from extapi_kit.credits import CreditLedger

__all__ = ["credit_store_url", "register"]

DEFAULT_STORE = "sqlite:///extapi-kit.db"


def credit_store_url(explicit: str | None) -> str:
    """Return the credit store URL the CLI uses.

    Args:
        explicit: the ``--store`` option, if given.
    """
    return str(
        explicit
        or os.environ.get("EXTAPI_KIT_CREDITS_STORE")
        or os.environ.get("EXTAPI_KIT_STORE")
        or DEFAULT_STORE
    )


def _keys_url(args: argparse.Namespace) -> str:
    return str(args.keys_store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE)


def _actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except Exception:  # no user name in this environment
        return "cli"


def _who(args: argparse.Namespace) -> dict[str, str]:
    if (args.key is None) == (args.owner is None):
        raise ConfigurationError("name exactly one of --key ID or --owner ID")
    return {"key_id": args.key} if args.key is not None else {"owner": args.owner}


async def _check_key(args: argparse.Namespace) -> None:
    if args.key is None:
        return
    from extapi_kit.keys.service import KeyService

    svc = KeyService(require_existing(_keys_url(args), "key store", "--keys-store"))
    try:
        await svc.get(args.key)  # NotFoundError: a typo never gets credits
    finally:
        await svc.aclose()


async def _with_ledger(
    args: argparse.Namespace, fn: Callable[[CreditLedger], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    from extapi_kit.credits import CreditLedger

    ledger = CreditLedger(credit_store_url(args.store))
    try:
        return await fn(ledger)
    finally:
        await ledger.aclose()


async def _view(ledger: CreditLedger, who: dict[str, str], limit: int) -> dict[str, Any]:
    remaining = await ledger.balance(**who)
    history = [e.as_dict() for e in await ledger.history(**who, limit=limit)]
    scope, ident = ("key", who["key_id"]) if "key_id" in who else ("owner", who["owner"])
    return {
        "scope": scope,
        "id": ident,
        "metered": remaining is not None,
        "remaining": remaining,
        "history": history,
    }


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
        return
    balance = "not metered" if data["remaining"] is None else str(data["remaining"])
    echo(f"{data['scope']} {data['id']}: {balance}")
    for e in data["history"]:
        before = "-" if e["before"] is None else e["before"]
        after = "-" if e["after"] is None else e["after"]
        reason = f"  ({e['reason']})" if e["reason"] else ""
        echo(f"  {e['action']:<5} {e['amount']:>8}  {before} -> {after}  by {e['actor']}{reason}")


def _show(args: argparse.Namespace) -> int:
    who = _who(args)
    require_existing(credit_store_url(args.store), "credit store")
    data = asyncio.run(_with_ledger(args, lambda led: _view(led, who, args.history)))
    _print(data, args.json)
    return 0


def _changer(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        who = _who(args)

        async def go(ledger: CreditLedger) -> dict[str, Any]:
            await _check_key(args)
            actor, reason = _actor(), args.reason
            if action == "set":
                await ledger.set(args.amount, actor=actor, reason=reason, **who)
            elif action == "add":
                await ledger.add(args.amount, actor=actor, reason=reason, **who)
            else:
                await ledger.clear(actor=actor, reason=reason, **who)
            return await _view(ledger, who, args.history)

        _print(asyncio.run(_with_ledger(args, go)), args.json)
        return 0

    return run


def _create_key(args: argparse.Namespace) -> int:
    from extapi_kit.keys.service import KeyService

    async def go(ledger: CreditLedger) -> dict[str, Any]:
        svc = KeyService(_keys_url(args))
        try:
            record, secret = await ledger.create_key(
                svc,
                args.name,
                uses=args.uses,
                actor=_actor(),
                owner=args.owner,
                scopes=args.scope or [],
            )
        finally:
            await svc.aclose()
        return {"key_id": record.id, "uses": args.uses, "secret": secret}

    data = asyncio.run(_with_ledger(args, go))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        echo(f"created key {data['key_id']} for {data['uses']} use(s); the secret (shown once):")
        echo(data["secret"])
    return 0


def register(subparsers: Any) -> None:
    """Register the ``credits`` command group.

    Args:
        subparsers: the top-level sub-parsers object.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", help=f"credit store URL (default $EXTAPI_KIT_CREDITS_STORE or {DEFAULT_STORE})"
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--key", help="the key id")
    target.add_argument("--owner", help="the owner id (a balance shared by its keys)")
    target.add_argument("--history", type=int, default=5, help="log entries shown (default 5)")
    change = argparse.ArgumentParser(add_help=False)
    change.add_argument("--reason", help="recorded in the credits log")
    change.add_argument("--keys-store", help="key store URL, to check --key exists")

    group = subparsers.add_parser("credits", help="credit balances (non-refilling uses)")
    sub = group.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("show", parents=[common, target], help="show a balance and its log")
    p.set_defaults(handler=_show)
    p = sub.add_parser("set", parents=[common, target, change], help="set a balance")
    p.add_argument("amount", type=int, help="the new balance (>= 0)")
    p.set_defaults(handler=_changer("set"))
    p = sub.add_parser("add", parents=[common, target, change], help="top up a balance")
    p.add_argument("amount", type=int, help="credits to add (negative: take back, floor 0)")
    p.set_defaults(handler=_changer("add"))
    p = sub.add_parser(
        "clear", parents=[common, target, change], help="remove a balance (no longer metered)"
    )
    p.set_defaults(handler=_changer("clear"))
    p = sub.add_parser(
        "create-key", parents=[common], help="create a key that works N times (N=1: one-time)"
    )
    p.add_argument("name", help="the key's name")
    p.add_argument("--uses", type=int, required=True, help="how many requests it may make")
    p.add_argument("--owner", help="the owner id")
    p.add_argument("--scope", action="append", help="a scope (repeatable)")
    p.add_argument("--keys-store", help="key store URL (default $EXTAPI_KIT_STORE)")
    p.set_defaults(handler=_create_key)
