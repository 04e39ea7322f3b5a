"""``extapi-kit plans``: create, update, list, show and delete plans (tiers); assign owners.

Plans live in the plan store: ``--plans-store URL``, else ``$EXTAPI_KIT_PLANS_STORE``, else the key
store (``--store``, ``$EXTAPI_KIT_STORE``, ``sqlite:///extapi-kit.db``; the plan tables are
prefixed, so they share its file). ``delete`` reads the key store to refuse a plan keys are on.
A key is put on a plan with ``extapi-kit keys create|update --plan NAME``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from extapi_kit.cli._output import echo
from extapi_kit.cli._stores import require_existing
from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from extapi_kit.plans.service import PlanService

__all__ = ["plan_service", "plans_store_url", "register"]

DEFAULT_STORE = "sqlite:///extapi-kit.db"


def plans_store_url(plans_store: str | None, keys_store: str | None) -> str:
    """Return the plan store URL: the option, ``$EXTAPI_KIT_PLANS_STORE``, else the key store.

    Args:
        plans_store: the ``--plans-store`` value.
        keys_store: the ``--store`` value (the key store).
    """
    return (
        plans_store
        or os.environ.get("EXTAPI_KIT_PLANS_STORE")
        or keys_store
        or os.environ.get("EXTAPI_KIT_STORE")
        or DEFAULT_STORE
    )


def plan_service(args: argparse.Namespace, *, read_only: bool = False) -> PlanService:
    """Return a :class:`~extapi_kit.plans.PlanService` over the store the options name.

    Args:
        args: parsed options (``plans_store``, ``store``).
        read_only: refuse a SQLite file that does not exist instead of creating it.
    """
    from extapi_kit.plans.service import PlanService

    url = plans_store_url(getattr(args, "plans_store", None), getattr(args, "store", None))
    if read_only:
        require_existing(url, "plan store", "--plans-store")
    return PlanService(url)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"invalid {what} {item!r}: use NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _quota(values: list[str] | None) -> dict[str, Any]:
    return {
        k: int(v) if v.isascii() and v.isdigit() else v for k, v in _pairs(values, "quota").items()
    }


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.description is not None:
        out["description"] = args.description
    if args.rate_limit is not None:
        out["rate_limits"] = _pairs(args.rate_limit, "rate limit")
    if args.quota is not None:
        out["quota"] = _quota(args.quota)
    if args.scopes is not None:
        out["scopes"] = args.scopes
    if args.no_ceiling:
        out["scopes"] = None
    if args.body_limit is not None:
        out["body_limit"] = args.body_limit
    return out


def _show_plan(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    for name in ("name", "description", "rate_limits", "quota", "scopes", "body_limit"):
        value = data.get(name)
        if name == "scopes" and value is None:
            value = "(no ceiling)"
        elif isinstance(value, list | dict):
            value = json.dumps(value) if value else "-"
        echo(f"{name:14} {'-' if value in (None, '') else value}")
    if "owners" in data:
        echo(f"{'owners':14} {', '.join(data['owners']) or '-'}")


async def _create(svc: PlanService, args: argparse.Namespace) -> None:
    from extapi_kit.plans.service import plan_out

    plan = await svc.create(args.name, **_settings(args))
    _show_plan(args, plan_out(plan))


async def _update(svc: PlanService, args: argparse.Namespace) -> None:
    from extapi_kit.plans.service import plan_out

    changes = _settings(args)
    if not changes:
        raise ConfigurationError("nothing to update: give at least one option")
    plan = await svc.update(args.name, **changes)
    _show_plan(args, plan_out(plan))


async def _list(svc: PlanService, args: argparse.Namespace) -> None:
    from extapi_kit.plans.service import plan_out

    plans = await svc.list()
    if args.json:
        print(json.dumps([plan_out(p) for p in plans], indent=2, sort_keys=True))
        return
    echo(f"{'NAME':16}{'RATE LIMITS':34}{'QUOTA':24}SCOPE CEILING")
    for p in plans:
        limits = ",".join(f"{k}={v}" for k, v in sorted(p.rate_limits.items())) or "-"
        quota = ",".join(f"{k}={v}" for k, v in sorted(p.quota.items())) or "-"
        ceiling = "(none)" if p.scopes is None else ",".join(p.scopes) or "(empty)"
        echo(f"{p.name:16}{limits[:33]:34}{quota[:23]:24}{ceiling}")


async def _show(svc: PlanService, args: argparse.Namespace) -> None:
    from extapi_kit.plans.service import plan_out

    data = plan_out(await svc.get(args.name))
    data["owners"] = sorted(await svc.owners(args.name))
    _show_plan(args, data)


async def _delete(svc: PlanService, args: argparse.Namespace) -> None:
    from extapi_kit.keys.store import KeyStore
    from extapi_kit.stores import store_from_url

    url = args.store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE
    keys: KeyStore = store_from_url("keys", url)
    svc.bind_keys(keys)
    try:
        await svc.delete(args.name)
    finally:
        await keys.aclose()
    echo(f"deleted plan {args.name}")


async def _assign(svc: PlanService, args: argparse.Namespace) -> None:
    plan = None if args.plan == "none" else args.plan
    await svc.assign_owner(args.owner, plan)
    if args.json:
        print(json.dumps({"owner": args.owner, "plan": plan}))
    else:
        echo(f"owner {args.owner} is on plan {plan or '(none)'}")


def _handler(
    fn: Callable[[PlanService, argparse.Namespace], Awaitable[None]], *, read_only: bool = False
) -> Any:
    def run(args: argparse.Namespace) -> int:
        async def main() -> None:
            svc = plan_service(args, read_only=read_only)
            try:
                await fn(svc, args)
            finally:
                await svc.aclose()

        asyncio.run(main())
        return 0

    return run


def _plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description")
    p.add_argument(
        "--rate-limit", action="append", help="CLASS=RATE (repeatable), e.g. read=1000/minute"
    )
    p.add_argument("--quota", action="append", help="PERIOD=N (repeatable; daily or monthly)")
    p.add_argument("--scopes", help="the scope ceiling: scopes separated by commas or spaces")
    p.add_argument("--no-ceiling", action="store_true", help="remove the scope ceiling")
    p.add_argument("--body-limit", help="largest request body, e.g. 1MiB")


def register(subparsers: Any) -> None:
    """Add the ``plans`` command group.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", help=f"key store URL (default $EXTAPI_KIT_STORE or {DEFAULT_STORE})"
    )
    common.add_argument(
        "--plans-store",
        help="plan store URL (default $EXTAPI_KIT_PLANS_STORE, else the key store)",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    plans = subparsers.add_parser("plans", help="manage plans (tiers) and owner assignments")
    sub = plans.add_subparsers(dest="plans_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("create", parents=[common], help="create a plan")
    p.add_argument("name", help="the plan name, e.g. pro")
    _plan_options(p)
    p.set_defaults(handler=_handler(_create))

    p = sub.add_parser(
        "update", parents=[common], help="change a plan; every key on it follows at runtime"
    )
    p.add_argument("name")
    _plan_options(p)
    p.set_defaults(handler=_handler(_update))

    p = sub.add_parser("list", parents=[common], help="list plans")
    p.set_defaults(handler=_handler(_list, read_only=True))

    p = sub.add_parser("show", parents=[common], help="show a plan and the owners on it")
    p.add_argument("name")
    p.set_defaults(handler=_handler(_show, read_only=True))

    p = sub.add_parser("delete", parents=[common], help="delete a plan no key or owner is on")
    p.add_argument("name")
    p.set_defaults(handler=_handler(_delete))

    p = sub.add_parser("assign", parents=[common], help="put an owner on a plan ('none': off)")
    p.add_argument("--owner", required=True, help="the owner or tenant id")
    p.add_argument("plan", help="the plan name, or 'none'")
    p.set_defaults(handler=_handler(_assign))
