"""``extapi-kit demo``: bootstrap an admin key, print how to use it, serve the studio with uvicorn.

The command-line parsing lives in :mod:`extapi_kit.cli.demo`; this module does the work so the
demo stays an example you can read (and copy) next to the app it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from extapi_kit.examples.studio.app import DEFAULT_CORS_ORIGIN, store_urls
from extapi_kit.examples.studio.external import ALL_SCOPES
from extapi_kit.exceptions import ConfigurationError, NotFoundError, StoreUnavailableError
from extapi_kit.keys.service import KeyService

__all__ = ["ADMIN_SCOPES", "DEMO_QUOTA", "bootstrap_admin_key", "cli_command", "run", "urls"]

ADMIN_SCOPES = ("admin", *ALL_SCOPES)
# A generous monthly quota on the demo key, so its answers carry the quota in RateLimit-Policy
# and the console's usage panel shows a quota meter (docs/usage-and-quotas.md).
DEMO_QUOTA = {"monthly": 100_000}
_ID_FILE = "admin-key.id"


async def bootstrap_admin_key(data_dir: Path, keys_url: str) -> tuple[str, str, str | None]:
    """Create the bootstrap admin key; revoke the previous one (its secret cannot be re-shown).

    Only the key id is kept in ``data_dir``; the secret is returned to be printed once.

    Args:
        data_dir: the demo's data directory.
        keys_url: the key store URL.

    Returns:
        ``(key_id, key, revoked_previous_id_or_None)``.
    """
    svc = KeyService(keys_url)
    id_file = data_dir / _ID_FILE
    previous = id_file.read_text().strip() if id_file.exists() else None
    revoked = None
    try:
        if previous:
            try:
                await svc.revoke(previous)
                revoked = previous
            except NotFoundError:
                pass
        record, key = await svc.create(
            "demo-admin",
            owner="demo",
            scopes=ADMIN_SCOPES,
            quota=DEMO_QUOTA,
            description="bootstrap admin key",
        )
    finally:
        await svc.aclose()
    _write_private(id_file, record.id + "\n")
    return record.id, key, revoked


def _write_private(path: Path, text: str) -> None:
    # 0600 whatever the umask: written to a fresh name (O_EXCL) and renamed over the old file, so
    # nothing already at the name is written through (issue 15 G4).
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _admin_available() -> bool:
    try:
        from extapi_kit.admin import admin_app  # noqa: F401
    except ImportError:
        return False
    return True


def cli_command() -> str:
    """The ``extapi-kit`` command as a line that works pasted into any shell.

    ``nox -s demo`` (or any virtualenv that is not activated) runs this process from a ``bin``
    directory that is not on the user's ``PATH``, so a bare ``extapi-kit`` in the banner would be
    "command not found" (issue 18 §1): name the running interpreter's own script by its absolute
    path, or the interpreter itself with ``-m`` when no script sits beside it.
    """
    script = Path(sys.executable).parent / "extapi-kit"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m extapi_kit.cli"


def urls(args: argparse.Namespace) -> dict[str, str | None]:
    """The demo's addresses: API, its reference, admin API and console (None without admin).

    Args:
        args: the parsed ``demo`` arguments.
    """
    base = f"http://{args.host}:{args.port}"
    admin = _admin_available()
    return {
        "url": base,
        "api_url": f"{base}/api/v1",
        "docs_url": f"{base}/api/v1/docs",
        "admin_api_url": f"{base}/admin/v1" if admin else None,
        "console_url": f"{base}/admin/console" if admin else None,
    }


def _banner(args: argparse.Namespace, key_id: str, key: str, revoked: str | None) -> str:
    u = urls(args)
    data = Path(args.data_dir).resolve()
    postgres = getattr(args, "postgres", None)
    if postgres:
        limits = "Redis" if args.redis else "memory, per worker" if args.workers > 1 else "memory"
        store = f"PostgreSQL {_where(postgres)} (rate limits: {limits})"
    else:
        store = _hide_password(args.redis) if args.redis else f"SQLite files in {data}"
    workers = f"{args.workers} workers" if args.workers > 1 else "1 worker"
    stores = {
        name: _hide_password(url) for name, url in store_urls(data, args.redis, postgres).items()
    }
    hidden = any(_HIDDEN in url for url in stores.values())
    cli = cli_command()
    lines = [
        "",
        "extapi-kit demo: the studio platform behind extapi_kit",
        f"  API       {u['api_url']}        reference: {u['docs_url']}",
        f"  console   {u['console_url']}  (admin API: {u['admin_api_url']}, admin-scope key)"
        if u["console_url"]
        else "  console   not available (extapi_kit.admin is not installed)",
        f"  stores    {store}; {workers}",
        f"  admin key {key}",
        f"            id {key_id}; shown once, a new one is made on every start"
        + (f" (previous {revoked} revoked)" if revoked else ""),
        "",
        # Every line below works pasted, in order, into the shell that started the demo: the CLI
        # by its absolute path, store URLs quoted (tests/e2e/test_demo_banner.py runs them).
        "Try it (in another terminal):",
        f"  export KEY={shlex.quote(key)}",
        f'  curl -H "X-API-Key: $KEY" "{u["api_url"]}/projects?limit=5&status=active"',
        f'  curl -X POST -H "X-API-Key: $KEY" -H "Idempotency-Key: first-job" \\\n'
        f"       -H 'Content-Type: application/json' \\\n"
        '       -d \'{"project_id": 1, "model": "sdxl", "prompt": "a red fox"}\' \\\n'
        f"       {u['api_url']}/jobs",
        f'  curl -N -H "X-API-Key: $KEY" {u["api_url"]}/jobs/1/events',
        f'  curl -H "X-API-Key: $KEY" {u["api_url"]}/tools/renderfarm/status',
        f"  {cli} keys create --store {shlex.quote(stores['keys'])} \\\n"
        "       --name partner --scopes projects:read,jobs:read,jobs:write",
        f"  {cli} keys usage {key_id} --store {shlex.quote(stores['usage'])} \\\n"
        f"       --keys-store {shlex.quote(stores['keys'])}",
        *(
            ["  (the store password is shown as *** above: put it back before running them)"]
            if hidden
            else []
        ),
        "",
    ]
    return "\n".join(lines)


_HIDDEN = "***"


def _hide_password(url: str) -> str:
    """Return ``url`` with its password, if any, as ``***`` (the banner goes to a terminal)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{_HIDDEN}@{host}").geturl()


def _check(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    postgres = getattr(args, "postgres", None)
    if args.workers > 1 and not (args.redis or postgres):
        raise ConfigurationError(
            "--workers N needs Redis or PostgreSQL: the workers must share keys, idempotency, "
            "usage and webhooks. Pass --redis redis://127.0.0.1:6379/0 (or set REDIS_URL), or "
            "--postgres postgresql://... (or set DATABASE_URL)."
        )
    if args.workers > 1 and postgres and not args.redis:
        # Rate limits stay in each process's memory: a key gets up to N x its budget (L3).
        print(
            f"note: rate limits are kept in each worker's memory: with {args.workers} workers a"
            f" key may get up to {args.workers} x its budget (pass --redis for shared limits)",
            file=sys.stderr,
        )
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"warning: serving the demo on {args.host}, not loopback", file=sys.stderr)


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "EXTAPI_DEMO_DATA_DIR": str(Path(args.data_dir).resolve()),
        "EXTAPI_DEMO_READ_LIMIT": args.read_limit,
        "EXTAPI_DEMO_WRITE_LIMIT": args.write_limit,
        "EXTAPI_DEMO_RATE_STRATEGY": args.rate_strategy,
        "EXTAPI_DEMO_CORS_ORIGINS": ",".join(args.cors_origin or [DEFAULT_CORS_ORIGIN]),
    }
    if args.redis:
        env["EXTAPI_DEMO_REDIS_URL"] = args.redis
    if getattr(args, "postgres", None):
        env["EXTAPI_DEMO_POSTGRES_URL"] = args.postgres
    return env


def _where(url: str) -> str:
    # host:port/db only: a URL may carry a password, which never goes to the terminal.
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


def run(args: argparse.Namespace) -> int:
    """Bootstrap the admin key, print the banner, then serve until interrupted.

    Args:
        args: the parsed ``demo`` arguments.
    """
    import uvicorn

    from extapi_kit.examples.studio.app import app_from_env
    from extapi_kit.examples.studio.internal import StudioDB

    _check(args)
    data = Path(args.data_dir).resolve()
    data.mkdir(mode=0o700, parents=True, exist_ok=True)  # its files hold keys and secrets
    StudioDB(str(data / "studio.db")).close()  # create and seed once, before any worker starts
    postgres = getattr(args, "postgres", None)
    stores = store_urls(data, args.redis, postgres)
    try:
        key_id, key, revoked = asyncio.run(bootstrap_admin_key(data, stores["keys"]))
    except StoreUnavailableError as exc:
        if postgres:
            where = _where(postgres)
        else:
            where = urlsplit(args.redis).netloc.rpartition("@")[2] if args.redis else str(data)
        raise ConfigurationError(
            f"cannot reach the key store at {where} ({exc}); is it running?"
        ) from exc
    if args.json:
        info: dict[str, Any] = {
            **urls(args),
            "cli": cli_command(),
            "admin_key": key,
            "admin_key_id": key_id,
            "data_dir": str(data),
            "store_urls": stores,
        }
        print(json.dumps(info), flush=True)
    else:
        print(_banner(args, key_id, key, revoked), flush=True)
    os.environ.update(_env(args))
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        # Only extapi_kit's resolver decides the client address (see docs/deployment.md).
        "proxy_headers": False,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": 5,
    }
    if args.workers > 1:
        uvicorn.run(
            "extapi_kit.examples.studio.app:app_from_env",
            factory=True,
            workers=args.workers,
            **common,
        )
    else:
        uvicorn.run(app_from_env(), **common)
    return 0
