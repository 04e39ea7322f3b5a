"""``TokenEndpoint``: the ASGI app serving the token endpoint, the JWKS and the metadata.

- ``POST /oauth/token``: RFC 6749 §4.4, ``grant_type=client_credentials``. The client (an API
  key) authenticates with HTTP Basic (``client_id`` = key id, password = key, each
  form-urlencoded, §2.3.1), with ``client_secret`` (and optional ``client_id``) in the form body,
  or with ``Authorization: Bearer <key>``; exactly one method per request (§2.3). Errors are the
  §5.2 JSON (``{"error": ..., "error_description": ...}``); every unusable credential (unknown,
  wrong, revoked, expired, malformed) gets the same 401 body and ``WWW-Authenticate`` for the
  scheme used, so nothing is learned by probing. Answers carry ``Cache-Control: no-store``.
- ``GET /.well-known/jwks.json``: the public keys (current, next, still-valid retired), cacheable
  for ``jwks_max_age`` seconds.
- ``GET /.well-known/oauth-authorization-server``: RFC 8414 metadata.

Mount it directly (Starlette ``Mount``/``Route``, or as the whole app) or through
``ExternalAPI.oauth()``, which adds the three paths to the registry as public routes and keeps
the API-key layer off them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_plus

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.exceptions import StoreError
from extapi_kit.oauth.issuer import OAuthError, TokenIssuer, invalid_client

__all__ = ["DEFAULT_PATHS", "TokenEndpoint"]

logger = logging.getLogger("extapi_kit.oauth")

DEFAULT_PATHS: Final = {
    "token": "/oauth/token",
    "jwks": "/.well-known/jwks.json",
    "metadata": "/.well-known/oauth-authorization-server",
}
_FORM: Final = b"application/x-www-form-urlencoded"
_NO_STORE: Final = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_CREDENTIAL_PARAMS: Final = frozenset({"client_secret", "client_id"})


class TokenEndpoint:
    """The token endpoint, JWKS and metadata as one ASGI app.

    Args:
        issuer: the :class:`~extapi_kit.oauth.issuer.TokenIssuer`.
        token_path: where ``POST`` token requests are served.
        jwks_path: where the JWKS is served.
        metadata_path: where the RFC 8414 metadata is served.
        jwks_max_age: ``Cache-Control: max-age`` of the JWKS and the metadata (seconds). Keep it
            below the time between rotations, so verifiers hold the next key before it is used.
        max_body: largest token request body read (bytes).
        client_ip: the client-IP resolver (trusted proxies); default: the socket peer. Inside a
            built stack the stack's resolved address is used.
    """

    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        token_path: str = DEFAULT_PATHS["token"],
        jwks_path: str = DEFAULT_PATHS["jwks"],
        metadata_path: str = DEFAULT_PATHS["metadata"],
        jwks_max_age: int = 300,
        max_body: int = 8192,
        client_ip: ClientIPResolver | None = None,
    ) -> None:
        self.issuer = issuer
        self.token_path = token_path
        self.jwks_path = jwks_path
        self.metadata_path = metadata_path
        self._max_age = [(b"cache-control", f"public, max-age={int(jwks_max_age)}".encode())]
        self._max_body = max_body
        self._resolver = client_ip or ClientIPResolver()

    def __repr__(self) -> str:
        return f"TokenEndpoint(issuer={self.issuer!r}, token_path={self.token_path!r})"

    @property
    def paths(self) -> tuple[str, str, str]:
        """The token, JWKS and metadata paths."""
        return (self.token_path, self.jwks_path, self.metadata_path)

    def metadata(self) -> dict[str, Any]:
        """Return the RFC 8414 metadata document."""
        return self.issuer.metadata(token_path=self.token_path, jwks_path=self.jwks_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request.

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive.
            send: the ASGI send.
        """
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path, method = scope["path"], scope["method"]
        if path == self.token_path:
            if method != "POST":
                await _json(
                    send,
                    405,
                    _error_body("invalid_request", "Use POST."),
                    [(b"allow", b"POST"), *_NO_STORE],
                )
                return
            await self._token(scope, receive, send)
        elif path in (self.jwks_path, self.metadata_path):
            if method not in ("GET", "HEAD"):
                await _json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET, HEAD")])
                return
            if path == self.jwks_path:
                try:
                    body = await self.issuer.signing.jwks()
                except StoreError as exc:
                    logger.warning("JWKS unavailable: %s", type(exc).__name__)
                    await _json(
                        send,
                        503,
                        {"error": "temporarily_unavailable"},
                        [(b"retry-after", b"5"), *_NO_STORE],
                    )
                    return
                ctype = b"application/jwk-set+json"
            else:
                body, ctype = self.metadata(), b"application/json"
            await _json(send, 200, body, self._max_age, ctype=ctype, head=method == "HEAD")
        else:
            await _json(send, 404, {"error": "not found"}, [])

    async def _token(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            try:
                token = await self._handle(scope, receive)
            except StoreError as exc:
                logger.warning("token endpoint: store unavailable: %s", type(exc).__name__)
                raise OAuthError(
                    "temporarily_unavailable",
                    "The token service is temporarily unavailable.",
                    status=503,
                    retry_after=5,
                ) from None
        except OAuthError as exc:
            headers = list(_NO_STORE)
            if exc.status == 401:
                headers.append((b"www-authenticate", _challenge(scope)))
            if exc.retry_after is not None:
                seconds = max(1, math.ceil(exc.retry_after))
                headers.append((b"retry-after", str(seconds).encode()))
            await _json(send, exc.status, _error_body(exc.error, exc.description), headers)
            return
        await _json(send, 200, token, _NO_STORE)

    async def _handle(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        headers = _headers(scope)
        if scope.get("query_string"):
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            if _CREDENTIAL_PARAMS & set(query):
                # RFC 6749 §2.3.1: credentials in the URI end up in logs.
                raise OAuthError("invalid_request", "Send client credentials in the body.")
        ctype = headers.get(b"content-type", [b""])
        if len(ctype) != 1 or ctype[0].split(b";")[0].strip().lower() != _FORM:
            raise OAuthError(
                "invalid_request", "Use Content-Type application/x-www-form-urlencoded."
            )
        body = await _read_body(receive, self._max_body)
        if body is None:
            raise OAuthError("invalid_request", "The request body is too large.")
        try:
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "The request body is not valid.") from None
        params: dict[str, str] = {}
        for name, value in pairs:
            if name in params:
                # RFC 6749 §3.2: parameters must not be repeated.
                raise OAuthError("invalid_request", f"Parameter {name!r} is repeated.")
            params[name] = value
        grant = params.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "The grant_type parameter is missing.")
        if grant != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type", "Only the client_credentials grant is supported."
            )
        client_id, secret = _credentials(headers, params)
        ctx_ip = self._resolver.resolve(scope)
        issued = await self.issuer.issue(
            secret, scope=params.get("scope"), client_id=client_id, client_ip=ctx_ip
        )
        return issued.response()


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(bytes(name).lower(), []).append(bytes(value))
    return out


def _credentials(
    headers: dict[bytes, list[bytes]], params: dict[str, str]
) -> tuple[str | None, str]:
    auth = headers.get(b"authorization", [])
    if len(auth) > 1:
        raise OAuthError("invalid_request", "Send one Authorization header.")
    methods: list[tuple[str | None, str]] = []
    if auth:
        scheme, _, value = auth[0].strip().partition(b" ")
        scheme = scheme.lower()
        if scheme == b"basic":
            methods.append(_basic(value.strip()))
        elif scheme == b"bearer":
            methods.append((None, value.strip().decode("latin-1")))
        else:
            raise invalid_client()
    if "client_secret" in params:
        methods.append((params.get("client_id"), params["client_secret"]))
    elif "client_id" in params and not methods:
        raise invalid_client()  # a public client id alone authenticates nothing
    if not methods:
        raise invalid_client()
    if len(methods) > 1:
        # RFC 6749 §2.3: one authentication method per request.
        raise OAuthError("invalid_request", "Use exactly one client authentication method.")
    client_id, secret = methods[0]
    if "client_id" in params and client_id is not None and params["client_id"] != client_id:
        raise invalid_client()
    if not secret:
        raise invalid_client()
    return client_id, secret


def _basic(value: bytes) -> tuple[str | None, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client() from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise invalid_client()
    # RFC 6749 §2.3.1: both halves are form-urlencoded before Basic encoding.
    return unquote_plus(user) or None, unquote_plus(password)


def _challenge(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == b"authorization" and bytes(value).strip().lower().startswith(
            b"bearer"
        ):
            return b'Bearer realm="oauth"'
    return b'Basic realm="oauth", charset="UTF-8"'


def _error_body(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description}


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _json(
    send: Send,
    status: int,
    body: Any,
    headers: list[tuple[bytes, bytes]],
    *,
    ctype: bytes = b"application/json",
    head: bool = False,
) -> None:
    raw = json.dumps(body, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(raw)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else raw})
