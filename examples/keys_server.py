"""A minimal Starlette app protected by ApiKeyMiddleware (keys in ``sqlite:///extapi-kit.db``).

Run it, create a key with the CLI (same database, same default hasher), and call it::

    python examples/keys_server.py
    extapi-kit keys create --name demo --scopes projects:read
    curl -H "X-API-Key: xk_live_..." http://127.0.0.1:8000/projects

uvicorn runs with ``proxy_headers=False``: otherwise uvicorn itself would rewrite the client address
from ``X-Forwarded-For`` for loopback peers, and per-key network restrictions would trust it.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from extapi_kit.context import get_context
from extapi_kit.middleware.api_key import ApiKeyMiddleware

STORE = os.environ.get("EXTAPI_KIT_STORE", "sqlite:///extapi-kit.db")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> JSONResponse:
    principal = get_context(request.scope).principal
    if principal is None:  # pragma: no cover - the middleware refuses first
        return JSONResponse({"key": None})
    return JSONResponse(
        {
            "key_id": principal.key_id,
            "prefix": principal.prefix,
            "name": principal.name,
            "owner": principal.owner,
            "scopes": sorted(principal.scopes),
        }
    )


async def projects(request: Request) -> JSONResponse:
    return JSONResponse({"items": [{"id": 7, "name": "Launch"}, {"id": 9, "name": "Docs"}]})


def build_app(store: str = STORE) -> Starlette:
    """Return the example app.

    Args:
        store: the key store URL.
    """
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/whoami", whoami),
            Route("/projects", projects),
        ]
    )
    app.add_middleware(
        ApiKeyMiddleware, store=store, exempt_paths=["/health"], required_scopes=["projects:read"]
    )
    return app


def main() -> None:
    """Serve the example on 127.0.0.1:8000."""
    print(
        "extapi_kit keys example on http://127.0.0.1:8000\n"
        f"  key store: {STORE}\n"
        "  create a key:  extapi-kit keys create --name demo --scopes projects:read\n"
        '  then:          curl -H "X-API-Key: <key>" http://127.0.0.1:8000/projects',
        file=sys.stderr,
    )
    uvicorn.run(build_app(), host="127.0.0.1", port=8000, proxy_headers=False, log_level="info")


if __name__ == "__main__":
    main()
