"""``extapi-kit demo``: run the bundled studio example on 127.0.0.1 with one command.

The example ships inside the package (``extapi_kit/examples/studio/``), so the command works from
an installed wheel (``pip install "extapi-kit[server]"``) as well as from a checkout; this module
only parses the arguments and hands them to :func:`extapi_kit.examples.studio.demo.run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from extapi_kit.cli._output import echo

__all__ = ["register"]

_NO_SERVER = (
    'the demo serves its app with uvicorn, which is not installed: pip install "extapi-kit[server]"'
)


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        echo("extapi-kit: error: " + _NO_SERVER, file=sys.stderr)
        return 1
    from extapi_kit.examples.studio.demo import run

    return run(args)


def register(subparsers: Any) -> None:
    """Add the ``demo`` command.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.
    """
    p = subparsers.add_parser(
        "demo",
        help="run the example studio platform behind extapi_kit on 127.0.0.1",
        description="Start the studio example (internal app, public API, webhooks, render-farm "
        "tool, admin console) with SQLite files in a data directory, create a bootstrap admin "
        "key and print it once.",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--data-dir",
        default="./extapi-demo-data",
        help="data directory (default ./extapi-demo-data)",
    )
    p.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL"),
        help="Redis URL for every shared store (default $REDIS_URL; embedded SQLite otherwise)",
    )
    p.add_argument(
        "--postgres",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL for every durable store: keys, audit, idempotency, usage, webhooks "
        "(default $DATABASE_URL); rate limits stay in memory, or in Redis with --redis",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (>1 needs --redis or --postgres; with --postgres alone each "
        "worker keeps its own rate-limit counters)",
    )
    p.add_argument("--read-limit", default="300/minute", help="read budget per key")
    p.add_argument("--write-limit", default="60/minute", help="write budget per key")
    p.add_argument(
        "--rate-strategy",
        default="sliding-window",
        choices=("sliding-window", "moving-window", "fixed-window"),
        help="rate-limit window strategy (moving-window is exact, sliding-window cheaper)",
    )
    p.add_argument(
        "--cors-origin", action="append", help="browser origin allowed by CORS (repeatable)"
    )
    p.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    p.add_argument("--json", action="store_true", help="print the key and URLs as one JSON line")
    p.set_defaults(handler=_run)
