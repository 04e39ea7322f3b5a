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
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from examples.studio.app import DEFAULT_CORS_ORIGIN, store_urls
from examples.studio.external import ALL_SCOPES
from extapi_kit.exceptions import ConfigurationError, NotFoundError, StoreUnavailableError
from extapi_kit.keys.service import KeyService

__all__ = ["ADMIN_SCOPES", "DEMO_QUOTA", "bootstrap_admin_key", "run"]

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
    id_file.write_text(record.id + "\n")
    return record.id, key, revoked


def _admin_available() -> bool:
    try:
        from extapi_kit.admin import admin_app  # noqa: F401
    except ImportError:
        return False
    return True


def _banner(args: argparse.Namespace, key_id: str, key: str, revoked: str | None) -> str:
    base = f"http://{args.host}:{args.port}"
    data = Path(args.data_dir).resolve()
    store = args.redis or f"SQLite files in {data}"
    workers = f"{args.workers} workers" if args.workers > 1 else "1 worker"
    lines = [
        "",
        "extapi-kit demo: the studio platform behind extapi_kit",
        f"  API       {base}/api/v1        reference: {base}/api/v1/docs",
        f"  console   {base}/admin/console  (admin API: {base}/admin/v1, admin-scope key)"
        if _admin_available()
        else "  console   not available (extapi_kit.admin is not installed)",
        f"  stores    {store}; {workers}",
        f"  admin key {key}",
        f"            id {key_id}; shown once, a new one is made on every start"
        + (f" (previous {revoked} revoked)" if revoked else ""),
        "",
        "Try it:",
        f'  export KEY="{key}"',
        f'  curl -H "X-API-Key: $KEY" "{base}/api/v1/projects?limit=5&status=active"',
        f'  curl -X POST -H "X-API-Key: $KEY" -H "Idempotency-Key: first-job" \\\n'
        f"       -H 'Content-Type: application/json' \\\n"
        '       -d \'{"project_id": 1, "model": "sdxl", "prompt": "a red fox"}\' \\\n'
        f"       {base}/api/v1/jobs",
        f'  curl -N -H "X-API-Key: $KEY" {base}/api/v1/jobs/1/events',
        f'  curl -H "X-API-Key: $KEY" {base}/api/v1/tools/renderfarm/status',
        f"  extapi-kit keys create --store {store_urls(data, args.redis)['keys']} \\\n"
        "       --name partner --scopes projects:read,jobs:read,jobs:write",
        f"  extapi-kit keys usage {key_id} --store {store_urls(data, args.redis)['usage']}",
        "",
    ]
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if args.workers > 1 and not args.redis:
        raise ConfigurationError(
            "--workers N needs Redis: the workers must share keys, rate limits, idempotency and "
            "webhooks. Start Redis and pass --redis redis://127.0.0.1:6379/0 (or set REDIS_URL)."
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
    return env


def run(args: argparse.Namespace) -> int:
    """Bootstrap the admin key, print the banner, then serve until interrupted.

    Args:
        args: the parsed ``demo`` arguments.
    """
    import uvicorn

    from examples.studio.app import app_from_env
    from examples.studio.internal import StudioDB

    _check(args)
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    StudioDB(str(data / "studio.db")).close()  # create and seed once, before any worker starts
    try:
        key_id, key, revoked = asyncio.run(
            bootstrap_admin_key(data, store_urls(data, args.redis)["keys"])
        )
    except StoreUnavailableError as exc:
        where = urlsplit(args.redis).netloc.rpartition("@")[2] if args.redis else str(data)
        raise ConfigurationError(
            f"cannot reach the key store at {where} ({exc}); is it running?"
        ) from exc
    if args.json:
        info: dict[str, Any] = {
            "url": f"http://{args.host}:{args.port}",
            "admin_key": key,
            "admin_key_id": key_id,
            "data_dir": str(data),
            "store_urls": store_urls(data, args.redis),
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
            "examples.studio.app:app_from_env", factory=True, workers=args.workers, **common
        )
    else:
        uvicorn.run(app_from_env(), **common)
    return 0
