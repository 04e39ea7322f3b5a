"""A separate "render farm" HTTP service, integrated as a tool behind ``/tools/renderfarm/...``.

It requires its own bearer token, which the gateway injects; third parties never see it.
"""

from __future__ import annotations

import hmac

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["create_renderfarm_app"]


def create_renderfarm_app(token: str) -> Starlette:
    """Build the render-farm app.

    Args:
        token: the bearer token the farm accepts.
    """
    expected = f"Bearer {token}".encode()

    def _authorized(request: Request) -> bool:
        got = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(got, expected)

    async def status(request: Request) -> JSONResponse:
        if not _authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"nodes": 8, "busy": 3, "queue": 12})

    async def queue(request: Request) -> JSONResponse:
        if not _authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        return JSONResponse({"queued": True, "frames": body.get("frames", 1)}, status_code=202)

    return Starlette(routes=[Route("/status", status), Route("/queue", queue, methods=["POST"])])
