"""Helpers for the issuing tests: a key service, an issuer, and the built stack under uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from extapi_kit import ExternalAPI
from extapi_kit._types import ASGIApp
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth import SigningKeys, TokenIssuer
from extapi_kit.routing.handlers import HandlerRequest
from tests.keys.support import cheap_hasher
from tests.support.serving import serving as serve_loopback

ISSUER = "https://api.example.test"
SECRET = "s" * 40


def key_service(url: str = "memory://", **options: Any) -> KeyService:
    """Return a key service with the cheapest argon2 parameters."""
    return KeyService(url, hasher=cheap_hasher(), **options)


def issuer(keys: KeyService, signing: SigningKeys | None = None, **options: Any) -> TokenIssuer:
    """Return a token issuer for ``keys`` (in-memory signing keys unless given)."""
    return TokenIssuer(keys, signing or SigningKeys(), issuer=ISSUER, **options)


def api_with_oauth(tokens: TokenIssuer, **oauth_options: Any) -> ExternalAPI:
    """Return an API with one protected route and the OAuth endpoints."""
    api = ExternalAPI(title="Issuing test")

    @api.get("/projects", scopes=["projects:read"])
    async def projects(req: HandlerRequest) -> dict[str, Any]:
        return {"data": [], "key": req.principal.key_id if req.principal else None}

    api.oauth(tokens, **oauth_options)
    return api


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (proxy headers off); yield its base URL."""
    async with serve_loopback(app, lifespan="off") as base:
        yield base
