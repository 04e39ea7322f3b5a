"""A partner platform offering client credentials, as a uvicorn app (``--workers N`` works).

Run: ``uvicorn tests.oauth.token_server:app``, configured by the environment:

- ``EXTAPI_TOK_REDIS``: Redis URL for keys, signing keys and rate limits (required).
- ``EXTAPI_TOK_AUDIT``: SQLite audit file (required).
- ``EXTAPI_TOK_READ``: the read budget per key (default ``1000/minute``).

Keys are cached for 30 s, so a refusal within 1 s of a revoke can only come from the revocation
stream. Every response carries ``x-worker-pid``.
"""

from __future__ import annotations

import os
from typing import Any

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth.issuer import TokenIssuer
from extapi_kit.oauth.signing import SigningKeys
from extapi_kit.oauth.verify import TokenVerifier
from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.keys.support import cheap_hasher

ISSUER = "http://platform.test"
SIGNING_SECRET = "s" * 40  # test only: seals the signing keys in Redis
_PID = str(os.getpid()).encode()


def make_app(redis_url: str, audit_db: str, read: str) -> ASGIApp:
    """Build the platform: an API with one read route, the token endpoint, keys and tokens.

    Args:
        redis_url: Redis for keys, signing keys and rate limits.
        audit_db: SQLite audit file.
        read: read budget per key.
    """
    api = ExternalAPI(title="partner platform")

    @api.get("/items/{id}", scopes=["items:read"])
    async def get_item(req: HandlerRequest) -> dict[str, Any]:
        return {"id": req.path_params["id"]}

    keys = KeyService(redis_url, hasher=cheap_hasher(), cache_ttl=30)
    signing = SigningKeys(redis_url, secret=SIGNING_SECRET)
    api.oauth(TokenIssuer(keys, signing, issuer=ISSUER))
    stack = api.build(
        key_store=keys,
        token_verifier=TokenVerifier(issuer=ISSUER, keys=signing.jwks),
        rate_limit_storage=redis_url,
        read=read,
        audit_sink=f"sqlite:///{audit_db}",
        options={"audit": {"flush_interval": 0.05}},
    )

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        async def tag(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-worker-pid", _PID)]}
            await send(message)

        await stack(scope, receive, tag if scope["type"] == "http" else send)

    return tagged


app = (
    make_app(
        os.environ["EXTAPI_TOK_REDIS"],
        os.environ["EXTAPI_TOK_AUDIT"],
        os.environ.get("EXTAPI_TOK_READ", "1000/minute"),
    )
    if "EXTAPI_TOK_REDIS" in os.environ
    else None
)
