"""A Starlette app behind both network guards, with CORS outside them.

Run it (proxy headers off, so only extapi_kit decides who the client is)::

    python examples/guards_app.py            # or:
    uvicorn examples.guards_app:app --no-proxy-headers --host 127.0.0.1 --port 8000

Then::

    curl -i http://127.0.0.1:8000/api/echo -d 'hello'                     # 200
    head -c 2000000 /dev/zero | curl -i http://127.0.0.1:8000/api/echo \\
        -H 'Transfer-Encoding: chunked' --data-binary @-                   # 413
    curl -i -X OPTIONS http://127.0.0.1:8000/api/echo \\
        -H 'Origin: https://app.example.com' \\
        -H 'Access-Control-Request-Method: POST'                          # 200 preflight

Configuration comes from the environment here, in the example server, never inside a middleware:
``GUARDS_ALLOW`` (default ``127.0.0.1,::1``), ``GUARDS_TRUSTED_PROXIES`` (default none) and
``GUARDS_MAX_BODY`` (default ``1MiB``).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit import ClientIPResolver, get_context
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware

ALLOW = os.environ.get("GUARDS_ALLOW", "127.0.0.1,::1")
TRUSTED_PROXIES = os.environ.get("GUARDS_TRUSTED_PROXIES", "")
MAX_BODY = os.environ.get("GUARDS_MAX_BODY", "1MiB")

# One resolver, shared by every layer that needs the client address.
resolver = ClientIPResolver([p for p in TRUSTED_PROXIES.split(",") if p.strip()])


async def echo(request: Request) -> Response:
    """Return the size of the body and the client address the guards decided on.

    Args:
        request: the incoming request.
    """
    body = await request.body()
    return JSONResponse({"size": len(body), "client": get_context(request.scope).client_ip})


async def health(request: Request) -> Response:
    """Liveness probe, exempt from the allowlist so the orchestrator can reach it.

    Args:
        request: the incoming request.
    """
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        Route("/api/echo", echo, methods=["POST"]),
        Route("/health", health),
    ],
    middleware=[
        # Outermost: CORS answers browser preflights itself, so OPTIONS never needs a key or an
        # allowlisted address, and adds CORS headers to every answer (including 403/413).
        Middleware(
            CORSMiddleware,
            allow_origins=["https://app.example.com"],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
        ),
        Middleware(BodySizeLimitMiddleware, max_body=MAX_BODY, rules={"/api/upload": "20MiB"}),
        Middleware(
            IPAllowlistMiddleware,
            allow=[a for a in ALLOW.split(",") if a.strip()],
            client_ip=resolver,
            exempt_paths=["/health"],
        ),
        # ApiKeyMiddleware, RateLimitMiddleware ... go here, inside the guards.
    ],
)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000, proxy_headers=False)
