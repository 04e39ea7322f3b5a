"""``extapi-kit demo``: run the bundled studio example on 127.0.0.1 with one command.

The example lives in the repository (``examples/studio/``), not in the installed package: this
command finds the checkout relative to this file (``src/extapi_kit/cli/demo.py`` -> repository
root), puts it on ``sys.path`` and runs :func:`examples.studio.demo.run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["find_examples", "register"]

_NOT_FOUND = (
    "the demo needs the extapi_kit source checkout (examples/studio/ next to src/); it was not "
    "found at {root}. Clone the repository and run `pip install -e .` from it, or run the "
    "command from the checkout."
)


def find_examples() -> Path | None:
    """Return the repository root holding ``examples/studio/app.py``, or None."""
    candidates = [Path(__file__).resolve().parents[3], Path.cwd()]
    for root in candidates:
        if (root / "examples" / "studio" / "app.py").is_file():
            return root
    return None


def _run(args: argparse.Namespace) -> int:
    root = find_examples()
    if root is None:
        print(
            "extapi-kit: error: " + _NOT_FOUND.format(root=Path(__file__).resolve().parents[3]),
            file=sys.stderr,
        )
        return 1
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from examples.studio.demo import run

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
    p.add_argument("--workers", type=int, default=1, help="worker processes (>1 needs --redis)")
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
