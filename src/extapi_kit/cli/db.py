"""``extapi-kit db``: create, upgrade and inspect the PostgreSQL schema ahead of a deploy.

``db migrate`` applies every missing migration of every PostgreSQL-backed store (keys,
idempotency, usage, and any other feature registered for ``postgresql://``) under one advisory
lock, so it is safe next to running servers and other ``db migrate`` runs; ``db status`` shows
each feature's version and what is pending. The store is ``--store URL``, else ``$DATABASE_URL``,
else ``$EXTAPI_KIT_STORE``; ``?schema=`` and ``?table_prefix=`` choose where the tables live.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
from typing import Any

from extapi_kit.cli._output import echo
from extapi_kit.exceptions import ConfigurationError

__all__ = ["migrate_url", "register", "status_url"]


def _url(args: argparse.Namespace) -> str:
    url = args.store or os.environ.get("DATABASE_URL") or os.environ.get("EXTAPI_KIT_STORE")
    if not url:
        raise ConfigurationError("give --store postgresql://... (or set $DATABASE_URL)")
    return str(url)


# Features whose store kinds register themselves when their module is imported (or whose
# PostgreSQL store is not behind a kind): imported first, so `db migrate` knows every table.
_SELF_REGISTERING = (
    "extapi_kit.credits.ledger",
    "extapi_kit.oauth.signing_store",
    "extapi_kit.keys.leaks_store",
)


def _load_features() -> None:
    # Each PostgreSQL store module registers its migrations when imported.
    from extapi_kit.stores import _REGISTRY

    for module in _SELF_REGISTERING:
        importlib.import_module(module)
    for schemes in _REGISTRY.values():
        target = schemes.get("postgresql")
        if isinstance(target, str):
            importlib.import_module(target.partition(":")[0])


async def _with_connection(url: str, fn: Any) -> Any:
    from extapi_kit.stores._postgres import PostgresDatabase, parse_postgres_url

    config = parse_postgres_url(url)
    _load_features()
    db = PostgresDatabase(config, migrate_on_start=False)
    try:
        return await db.run(lambda conn: fn(conn, config))
    finally:
        await db.aclose()


async def migrate_url(url: str) -> dict[str, list[int]]:
    """Apply every missing migration of every PostgreSQL store; return the versions applied.

    Args:
        url: a ``postgresql://`` URL (``?schema=`` and ``?table_prefix=`` honoured).
    """
    from extapi_kit.stores._postgres import migrate

    result: dict[str, list[int]] = await _with_connection(url, migrate)
    return result


async def status_url(url: str) -> list[dict[str, Any]]:
    """Return ``{feature, current, latest, pending}`` for every PostgreSQL store.

    Args:
        url: a ``postgresql://`` URL.
    """
    from extapi_kit.stores._postgres import migration_status

    result: list[dict[str, Any]] = await _with_connection(url, migration_status)
    return result


def _migrate(args: argparse.Namespace) -> int:
    done = asyncio.run(migrate_url(_url(args)))
    if args.json:
        print(json.dumps(done, sort_keys=True))
        return 0
    for feature, versions in sorted(done.items()):
        what = ", ".join(f"v{v}" for v in versions) if versions else "up to date"
        echo(f"{feature}: {'applied ' if versions else ''}{what}")
    return 0


def _status(args: argparse.Namespace) -> int:
    rows = asyncio.run(status_url(_url(args)))
    if args.json:
        print(json.dumps(rows, sort_keys=True))
    else:
        for r in rows:
            pending = ", ".join(f"v{v}" for v in r["pending"]) or "none"
            echo(f"{r['feature']}: version {r['current']} of {r['latest']}, pending: {pending}")
    return 1 if args.check and any(r["pending"] for r in rows) else 0


def register(subparsers: Any) -> None:
    """Add the ``db`` command group.

    Args:
        subparsers: the root parser's sub-parsers.
    """
    parser = subparsers.add_parser(
        "db",
        help="migrate or inspect the PostgreSQL schema",
        description="Create or upgrade the PostgreSQL tables of every store, or show versions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    store_help = "postgresql:// URL (default $DATABASE_URL, else $EXTAPI_KIT_STORE)"
    m = sub.add_parser("migrate", help="apply the missing migrations (safe to run concurrently)")
    m.add_argument("--store", help=store_help)
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(handler=_migrate)
    s = sub.add_parser("status", help="show each feature's schema version and pending migrations")
    s.add_argument("--store", help=store_help)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--check", action="store_true", help="exit 1 when a migration is pending")
    s.set_defaults(handler=_status)
