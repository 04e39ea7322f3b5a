"""``extapi-kit openapi``: print the OpenAPI document of an external API.

By default it prints the bundled example platform's ``/api/v1`` (from a source checkout); with
``--app module:attribute`` it prints your own ``ExternalAPI`` (an instance, or a callable taking no
arguments that returns one).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:  # loaded when the command runs, so `extapi-kit --help` starts fast
    from extapi_kit.routing import ExternalAPI

__all__ = ["register"]


def _load_app(spec: str) -> ExternalAPI:
    from extapi_kit.routing import ExternalAPI

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"--app must look like 'package.module:attribute', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {spec!r}: {exc}") from None
    if not isinstance(obj, ExternalAPI) and callable(obj):
        obj = obj()
    if not isinstance(obj, ExternalAPI):
        raise ConfigurationError(f"{spec!r} is not an ExternalAPI")
    return obj


def _studio_document(version: str) -> dict[str, Any]:
    from extapi_kit.examples.studio.external import build_external_api
    from extapi_kit.examples.studio.internal import create_internal_app

    with tempfile.TemporaryDirectory() as tmp:
        internal = create_internal_app(os.path.join(tmp, "studio.db"))
        try:
            api = build_external_api(
                internal,
                internal.state.db,
                cursor_secret="openapi-only-not-a-real-secret",
                farm_url="http://127.0.0.1:9",
                farm_token="unused",
            )
            return api.openapi(version)
        finally:
            internal.state.db.close()


def _run(args: argparse.Namespace) -> int:
    doc = _load_app(args.app).openapi(args.version) if args.app else _studio_document(args.version)
    print(json.dumps(doc, indent=args.indent, sort_keys=False))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``openapi`` command.

    Args:
        subparsers: the root parser's sub-parsers.
    """
    parser = subparsers.add_parser(
        "openapi",
        help="print the external OpenAPI document",
        description="Print the OpenAPI 3.1 document of an ExternalAPI (default: the example's).",
    )
    parser.add_argument("--app", help="module:attribute of an ExternalAPI (or a factory)")
    parser.add_argument("--version", default="v1", help="API version (default: v1)")
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (default: 2)")
    parser.set_defaults(handler=_run)
