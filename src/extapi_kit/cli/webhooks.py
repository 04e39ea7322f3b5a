"""``extapi-kit webhooks``: endpoints, the test ping, deliveries, replay, secret rotation, worker.

The store comes from ``--store URL``, else ``$EXTAPI_KIT_WEBHOOK_STORE``, else
``sqlite:///extapi-kit-webhooks.db`` in the working directory. A new or rotated secret is printed
once on stdout; the reminder goes to stderr so ``--json`` output stays machine-readable.
``worker`` runs a dispatcher until SIGTERM or SIGINT and then stops gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from extapi_kit._units import parse_duration
from extapi_kit.cli._output import echo
from extapi_kit.cli._progress import progress
from extapi_kit.cli._stores import require_existing
from extapi_kit.cli.keys import grant_args
from extapi_kit.exceptions import ConfigurationError, ExtAPIKitError

if TYPE_CHECKING:  # loaded when a command runs, so `extapi-kit --help` starts fast
    from extapi_kit.webhooks.manage import WebhookManager
    from extapi_kit.webhooks.models import Endpoint
    from extapi_kit.webhooks.store import WebhookStore

__all__ = ["register"]

DEFAULT_STORE = "sqlite:///extapi-kit-webhooks.db"
_WARNING = "Store this secret now: it is shown only once."


def _store(args: argparse.Namespace, *, existing: bool = True) -> WebhookStore:
    from extapi_kit.webhooks.store import webhook_store_from_url

    url = args.store or os.environ.get("EXTAPI_KIT_WEBHOOK_STORE") or DEFAULT_STORE
    if existing:
        # Only `add` and `worker` may start a new store; the others read or change endpoints
        # that must already be in one, and a typo must not create an empty one (issue 18 §5).
        require_existing(url, "webhook store")
    return webhook_store_from_url(url)


def _since(value: str) -> float:
    """``1h``/``30m``/``7d`` ago, or an ISO-8601 time."""
    try:
        return time.time() - parse_duration(value)
    except ConfigurationError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ConfigurationError(f"invalid --since {value!r}: use 1h, 7d or an ISO time") from None


def _run(
    args: argparse.Namespace,
    fn: Callable[[WebhookManager], Awaitable[int]],
    *,
    existing: bool = True,
) -> int:
    from extapi_kit.webhooks.manage import WebhookManager

    async def main() -> int:
        store = _store(args, existing=existing)
        try:
            manager = WebhookManager(store, allow_loopback=getattr(args, "allow_loopback", False))
            return await fn(manager)
        finally:
            await store.aclose()

    return asyncio.run(main())


_TIME_SUFFIXES = ("_at", "_since", "_until")
_LOOPBACK_HINT = (
    "for a receiver on this machine (tests, local demos; never production) add --allow-loopback"
)
_LOOPBACK_HELP = "allow 127.0.0.1/::1 receivers (tests, local demos; never production)"
_GRANT_HELP = "only events about these resources: TYPE=ID,ID (repeatable), e.g. projects=7,9"


def _iso_times(data: dict[str, Any]) -> dict[str, Any]:
    """Epoch floats of the models as ISO 8601 UTC, the one format of every JSON output of the
    CLI (``keys`` prints ``created_at`` so too; issue 18 §5)."""
    from extapi_kit.keys.models import iso

    for name, value in data.items():
        if name.endswith(_TIME_SUFFIXES) and isinstance(value, int | float):
            data[name] = iso(value)
    return data


def _endpoint_dict(e: Endpoint) -> dict[str, Any]:
    data = e.model_dump(mode="json", exclude={"secrets"})
    data["secrets"] = len(e.secrets)  # how many, never the values
    return _iso_times(data)


def _loopback_hint(exc: Exception, url: str) -> ConfigurationError | None:
    """A URL refused only because it is loopback: say which option allows it."""
    from extapi_kit.webhooks.ssrf import URLGuard, URLRejectedError

    if not isinstance(exc, URLRejectedError) or exc.reason != "denied_address":
        return None
    try:
        URLGuard(allow_loopback=True).check_syntax(url)
    except ExtAPIKitError:
        return None
    return ConfigurationError(f"{exc}; {_LOOPBACK_HINT}")


def _lines(*lines: str) -> None:
    for line in lines:
        echo(line)


def _emit(args: argparse.Namespace, data: Any, table: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        table()


def _check_flags(args: argparse.Namespace, *, zero_clears: bool = False) -> None:
    """Bound numeric flags before any store is opened; the error names the flag (M10)."""
    from extapi_kit.webhooks._validation import check_concurrency, check_rate_limit

    if args.rate is not None and not (zero_clears and args.rate == 0):
        check_rate_limit(args.rate, "--rate")
    check_concurrency(getattr(args, "concurrency", None), "--concurrency")


def _add(args: argparse.Namespace) -> int:
    _check_flags(args)

    async def go(m: WebhookManager) -> int:
        try:
            ep = await m.add_endpoint(
                args.url, event_types=_types(args.events), description=args.description or "",
                rate_limit=args.rate, max_concurrency=args.concurrency, owner=args.owner,
                key_id=args.key_id, grants=grant_args(args.grant) if args.grant else None,
            )  # fmt: skip
        except ExtAPIKitError as exc:
            raise (_loopback_hint(exc, args.url) or exc) from None
        secret = ep.secrets[0].value
        _emit(args, {"secret": secret, **_endpoint_dict(ep)},
              lambda: _lines(f"{ep.id}  {ep.url}", f"secret: {secret}"))  # fmt: skip
        echo(_WARNING, file=sys.stderr)
        return 0

    return _run(args, go, existing=False)


def _scope_text(e: Endpoint) -> str:
    parts = [f"{k}={','.join(v)}" for k, v in sorted((e.grants or {}).items())]
    if e.key_id:
        parts.append(f"key={e.key_id}")
    return f"  ({'; '.join(parts)})" if parts else ""


def _types(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def _list(args: argparse.Namespace) -> int:
    async def go(m: WebhookManager) -> int:
        eps = await m.list_endpoints()

        def table() -> None:
            for e in eps:
                state = "enabled" if e.enabled else f"disabled ({e.disabled_reason})"
                scope = _scope_text(e)
                echo(f"{e.id}  {e.url}  [{','.join(e.event_types) or '*'}]  {state}{scope}")

        _emit(args, [_endpoint_dict(e) for e in eps], table)
        return 0

    return _run(args, go)


def _update(args: argparse.Namespace) -> int:
    _check_flags(args, zero_clears=True)

    async def go(m: WebhookManager) -> int:
        changes: dict[str, Any] = {}
        if args.url:
            changes["url"] = args.url
        if args.events is not None:
            changes["event_types"] = _types(args.events)
        if args.description is not None:
            changes["description"] = args.description
        if args.enable or args.disable:
            changes["enabled"] = bool(args.enable)
        if args.rate is not None:
            changes["rate_limit"] = args.rate or None
        if args.grant:
            changes["grants"] = grant_args(args.grant)
        elif args.clear_grants:
            changes["grants"] = None
        try:
            ep = await m.update_endpoint(args.id, **changes)
        except ExtAPIKitError as exc:
            raise (_loopback_hint(exc, args.url or "") or exc) from None
        _emit(args, _endpoint_dict(ep), lambda: echo(f"updated {ep.id}"))
        return 0

    return _run(args, go)


def _remove(args: argparse.Namespace) -> int:
    async def go(m: WebhookManager) -> int:
        await m.remove_endpoint(args.id)
        echo(f"removed {args.id}")
        return 0

    return _run(args, go)


def _test(args: argparse.Namespace) -> int:
    async def go(m: WebhookManager) -> int:
        r = await m.send_test(args.id)
        data = {"ok": r.ok, "status": r.status, "error": r.error, "duration": r.duration,
                "response_excerpt": r.response_excerpt}  # fmt: skip
        outcome = f"HTTP {r.status}" if r.status else r.error
        _emit(args, data, lambda: echo(f"{'ok' if r.ok else 'FAILED'}: {outcome} "
                                         f"in {r.duration * 1000:.0f} ms"))  # fmt: skip
        if r.error == "ssrf_blocked" and not args.allow_loopback:
            echo(
                "hint: the receiver's address is private, loopback or reserved, where webhooks"
                f" are never sent; {_LOOPBACK_HINT}",
                file=sys.stderr,
            )
        return 0 if r.ok else 1

    return _run(args, go)


def _deliveries(args: argparse.Namespace) -> int:
    async def go(m: WebhookManager) -> int:
        ds = await m.deliveries(endpoint_id=args.endpoint, status=args.status, limit=args.limit)

        def table() -> None:
            for d in ds:
                test = "  (test ping)" if d.test else ""
                echo(f"{d.id}  {d.endpoint_id}  {d.status.value:10} attempts={d.attempts}"
                      f"  last_error={d.last_error or '-'}{test}")  # fmt: skip

        _emit(args, [_iso_times(d.model_dump(mode="json")) for d in ds], table)
        return 0

    return _run(args, go)


def _replay(args: argparse.Namespace) -> int:
    async def go(m: WebhookManager) -> int:
        if args.delivery:
            await m.replay_delivery(args.delivery)
            count = 1
        elif args.endpoint and args.since:
            with progress("requeueing failed deliveries", quiet=args.json) as shown:
                count = await m.replay_failed(
                    args.endpoint, since=_since(args.since), on_progress=shown.update
                )
        elif args.type and args.since and args.to:
            with progress("creating deliveries", quiet=args.json) as shown:
                count = await m.replay_events(
                    args.type, since=_since(args.since), to_endpoint=args.to,
                    on_progress=shown.update,
                )  # fmt: skip
        else:
            raise ConfigurationError(
                "use --delivery ID, or --endpoint ID --since T, or --type T --since T --to ID"
            )
        _emit(args, {"requeued": count}, lambda: echo(f"requeued {count} deliveries"))
        return 0

    return _run(args, go)


def _rotate(args: argparse.Namespace) -> int:
    from extapi_kit.webhooks._validation import check_grace

    try:
        grace = check_grace(parse_duration(args.grace), "--grace")
    except ConfigurationError as exc:
        msg = str(exc)
        raise ConfigurationError(msg if msg.startswith("--grace") else f"--grace: {msg}") from None

    async def go(m: WebhookManager) -> int:
        secret = await m.rotate_secret(args.id, grace=grace)
        _emit(args, {"id": args.id, "secret": secret}, lambda: echo(f"secret: {secret}"))
        echo(_WARNING, file=sys.stderr)
        return 0

    return _run(args, go)


def _worker(args: argparse.Namespace) -> int:
    from extapi_kit.webhooks.dispatcher import WebhookDispatcher

    async def main() -> int:
        store = _store(args, existing=False)
        dispatcher = WebhookDispatcher(
            store, concurrency=args.concurrency, allow_loopback=args.allow_loopback
        )
        echo(f"webhook worker {dispatcher.owner} running; SIGTERM to stop", file=sys.stderr)
        try:
            await dispatcher.run_forever()
        finally:
            await store.aclose()
        return 0

    return asyncio.run(main())


def register(subparsers: Any) -> None:
    """Add the ``webhooks`` command group.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers``.
    """
    group = subparsers.add_parser("webhooks", help="manage outbound webhooks, run the worker")
    sub = group.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def cmd(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, help=help)
        p.add_argument("--store", help="store URL (default $EXTAPI_KIT_WEBHOOK_STORE)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(handler=handler)
        return p

    p = cmd("add", _add, "register an endpoint (prints its secret once)")
    p.add_argument("url")
    p.add_argument("--events", help="comma-separated event types (default: all)")
    p.add_argument("--description")
    p.add_argument("--rate", type=float, help="max deliveries per second (0.001 to 1000)")
    p.add_argument("--concurrency", type=int, help="max in-flight deliveries (1 to 1000)")
    p.add_argument("--owner", help="owner (tenant) id")
    p.add_argument("--key-id", help="the API key it belongs to (its grants apply too)")
    p.add_argument("--grant", action="append", help=_GRANT_HELP)
    p.add_argument("--allow-loopback", action="store_true", help=_LOOPBACK_HELP)
    cmd("list", _list, "list endpoints")
    p = cmd("update", _update, "change an endpoint")
    p.add_argument("id")
    p.add_argument("--url")
    p.add_argument("--events")
    p.add_argument("--description")
    p.add_argument(
        "--rate", type=float, help="max deliveries per second (0.001 to 1000; 0 = unlimited)"
    )
    p.add_argument("--grant", action="append", help=_GRANT_HELP + " (replaces all)")
    p.add_argument("--clear-grants", action="store_true", help="remove the endpoint's grants")
    p.add_argument("--enable", action="store_true")
    p.add_argument("--disable", action="store_true")
    p.add_argument("--allow-loopback", action="store_true", help=_LOOPBACK_HELP)
    cmd("remove", _remove, "delete an endpoint").add_argument("id")
    p = cmd("test", _test, "send a signed ping and report the outcome")
    p.add_argument("id")
    p.add_argument("--allow-loopback", action="store_true", help=_LOOPBACK_HELP)
    p = cmd("deliveries", _deliveries, "list deliveries")
    p.add_argument("--endpoint")
    p.add_argument("--status", choices=["pending", "delivering", "succeeded", "failed",
                                        "cancelled"])  # fmt: skip
    p.add_argument("--limit", type=int, default=100)
    p = cmd("replay", _replay, "send deliveries again")
    p.add_argument("--delivery")
    p.add_argument("--endpoint")
    p.add_argument("--type")
    p.add_argument("--since", help="1h, 7d or an ISO-8601 time")
    p.add_argument("--to", help="endpoint id receiving the replayed events")
    p = cmd("rotate-secret", _rotate, "add a new secret; the old one signs during the grace")
    p.add_argument("id")
    p.add_argument("--grace", default="24h", help="e.g. 1h, 24h (default), at most 30d")
    p = cmd("worker", _worker, "run a dispatcher until SIGTERM/SIGINT")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--allow-loopback", action="store_true", help=_LOOPBACK_HELP)
