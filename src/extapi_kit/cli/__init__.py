"""The ``extapi-kit`` command line: keys, webhooks, audit, usage, db (PostgreSQL), demo server.

Each command group lives in its own module exposing ``register(subparsers)``; every command takes
``--json`` where its output is data, and exits non-zero with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from extapi_kit.cli._output import echo
from extapi_kit.exceptions import ExtAPIKitError

__all__ = ["main"]

# Command groups, imported lazily so a missing optional part never breaks the others.
_GROUPS = (
    "keys",
    "plans",
    "tokens",
    "audit",
    "webhooks",
    "usage",
    "credits",
    "db",
    "openapi",
    "demo",
    "completion",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every available command group registered."""
    parser = argparse.ArgumentParser(
        prog="extapi-kit",
        description="Manage API keys, webhooks and the audit trail; run the demo server.",
    )
    from extapi_kit import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"extapi_kit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"extapi_kit.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse enforces a sub-command
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ExtAPIKitError as exc:
        echo(f"extapi-kit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
