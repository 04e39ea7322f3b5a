"""In-process targets: forwarding to an internal ASGI app (handlers live in ``handlers.py``).

Forwarding rewrites the path (``/api/v1/projects/7`` -> ``/internal/projects/7``), keeps the query
string, and replaces the client's headers that carry identity or credentials with the identity
the stack verified: the internal service must be able to trust ``X-API-Key-Id`` and friends,
so a client-sent copy is always removed first, and the client's own ``Authorization``,
``X-API-Key`` and ``Cookie`` never reach it (Kong's ``hide_credentials``; case A11).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.context import SCOPE_KEY, Principal, RequestContext
from extapi_kit.exceptions import ProblemError
from extapi_kit.problems import send_problem
from extapi_kit.routing._buffered import BufferedAnswer
from extapi_kit.routing.paths import render_parts, render_path
from extapi_kit.routing.routes import Route

__all__ = [
    "CREDENTIAL_HEADERS",
    "IDENTITY_HEADERS",
    "call_app",
    "identity_headers",
    "render_parts",
    "render_path",
    "send_problem_error",
]

logger = logging.getLogger("extapi_kit.routing")

CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"cookie", b"proxy-authorization"})
IDENTITY_HEADERS = frozenset(
    {b"x-api-key-id", b"x-owner-id", b"x-user-id", b"x-scopes", b"x-resource-grants"}
)
# Method-override headers are ignored by the registry (Z1) and must not reach an internal app
# that might honour them; forwarding headers are replaced by the resolved client address.
_DROP_HEADERS = (
    CREDENTIAL_HEADERS
    | IDENTITY_HEADERS
    | frozenset(
        {
            b"x-http-method-override",
            b"x-http-method",
            b"x-method-override",
            b"forwarded",
            b"x-forwarded-for",
            b"x-real-ip",
        }
    )
)
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_SCOPE_KEYS = ("type", "asgi", "http_version", "scheme", "server", "client", "method", "state")


def identity_headers(
    principal: Principal | None, client_ip: str | None
) -> list[tuple[bytes, bytes]]:
    """Return the trusted identity headers for an internal service.

    Args:
        principal: the verified key's principal (None for public routes).
        client_ip: the resolved client address.
    """
    out: list[tuple[bytes, bytes]] = []
    if client_ip:
        out.append((b"x-forwarded-for", client_ip.encode("latin-1")))
    if principal is None:
        return out
    out.extend(_principal_headers(principal))
    return out


# Encoded identity headers per principal object: the key cache hands the same (frozen) principal
# to many requests, so its headers are built once. An entry keeps its principal alive, so the
# id() is never reused while the entry exists.
_PRINCIPAL_HEADERS: dict[int, tuple[Principal, tuple[tuple[bytes, bytes], ...]]] = {}
_PRINCIPAL_HEADERS_MAX = 4096


def _principal_headers(principal: Principal) -> tuple[tuple[bytes, bytes], ...]:
    hit = _PRINCIPAL_HEADERS.get(id(principal))
    if hit is not None and hit[0] is principal:
        return hit[1]
    out = [(b"x-api-key-id", principal.key_id.encode("utf-8"))]
    if principal.owner is not None:
        owner = principal.owner.encode("utf-8")
        out.append((b"x-owner-id", owner))
        out.append((b"x-user-id", owner))
    out.append((b"x-scopes", " ".join(sorted(principal.scopes)).encode("utf-8")))
    out.append((b"x-resource-grants", _grants_header(principal.grants)))
    value = tuple(out)
    if len(_PRINCIPAL_HEADERS) >= _PRINCIPAL_HEADERS_MAX:
        _PRINCIPAL_HEADERS.clear()
    _PRINCIPAL_HEADERS[id(principal)] = (principal, value)
    return value


# Serialised X-Resource-Grants per grants mapping: a cached principal is reused for many requests,
# so its header is built once. The entry keeps the mapping alive, so its id() is never reused.
_GRANTS_HEADERS: dict[int, tuple[Mapping[str, frozenset[str]], bytes]] = {}
_GRANTS_HEADERS_MAX = 4096


def _grants_header(grants: Mapping[str, frozenset[str]]) -> bytes:
    hit = _GRANTS_HEADERS.get(id(grants))
    if hit is not None and hit[0] is grants:
        return hit[1]
    doc = {k: sorted(v) for k, v in grants.items()}
    value = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    if len(_GRANTS_HEADERS) >= _GRANTS_HEADERS_MAX:
        _GRANTS_HEADERS.clear()
    _GRANTS_HEADERS[id(grants)] = (grants, value)
    return value


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """Return a receive that yields ``body`` once, then defers to ``receive`` (disconnects).

    Args:
        body: the complete request body.
        receive: the original receive.
    """
    done = False

    async def _receive() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return _receive


async def send_problem_error(send: Send, exc: ProblemError, scope: Scope) -> None:
    """Send the problem a :class:`ProblemError` carries.

    Args:
        send: the ASGI send.
        exc: the error; ``detail`` and ``headers`` in its extras are used as such, the rest
            become extension members.
        scope: the request scope (records the rejection).
    """
    extra = dict(exc.extra)
    detail = extra.pop("detail", None)
    headers = extra.pop("headers", ())
    await send_problem(
        send, exc.problem, detail, headers=headers, extensions=extra or None, scope=scope
    )


def with_headers(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    """Wrap ``send`` to append headers to the response start (deprecation headers).

    Args:
        send: the ASGI send.
        headers: raw headers to add.
    """

    async def _send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return _send


async def call_app(
    route: Route,
    scope: Scope,
    receive: Receive,
    send: Send,
    params: Mapping[str, str],
    body: bytes | None,
    resolver: ClientIPResolver,
) -> None:
    """Forward a request to an internal ASGI app.

    Args:
        route: the matched route (``kind == "app"``).
        scope: the public request scope.
        receive: the public receive.
        send: the public send.
        params: matched path parameters.
        body: the validated, re-serialised body to send instead of the client's, or None to
            stream the client's body through untouched.
        resolver: the stack's client-IP resolver (sends ``X-Forwarded-For``).
    """
    if not (route.app is not None):  # an internal invariant, not user input
        raise RuntimeError("set by expose() for app targets, not user input")
    ctx: RequestContext = scope[SCOPE_KEY]
    client_ip = resolver.resolve(scope)
    path, raw_path = render_parts(route.internal_parts, params)
    drop = _DROP_HEADERS | _BODY_HEADERS if body is not None else _DROP_HEADERS
    headers = [(k, v) for k, v in scope["headers"] if k not in drop]
    if client_ip:
        headers.append((b"x-forwarded-for", client_ip.encode("latin-1")))
    if ctx.principal is not None:
        headers.extend(_principal_headers(ctx.principal))
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
        receive = replay_receive(body, receive)
    inner: dict[str, Any] = {k: scope[k] for k in _SCOPE_KEYS if k in scope}
    inner.update(
        path=path,
        raw_path=raw_path,
        root_path="",
        query_string=scope.get("query_string", b""),
        headers=headers,
        extensions=scope.get("extensions") or {},
    )
    inner[SCOPE_KEY] = ctx
    if route.response_adapter is not None and scope["method"] != "HEAD":
        # HEAD answers carry no body, so there is nothing to filter (or to validate).
        send = _FilteredResponse(route, scope, send).send
    await route.app(inner, receive, _mask_server_errors(send, scope))


_SERVER_ERRORS = {502: "bad-gateway", 503: "service-unavailable", 504: "gateway-timeout"}
_KEEP_ON_ERROR = frozenset({b"retry-after"})


def _mask_server_errors(send: Send, scope: Scope) -> Send:
    """Replace an internal 5xx body by a generic problem: internal details never leave (A10)."""
    masked = False

    async def _send(message: Message) -> None:
        nonlocal masked
        if message["type"] == "http.response.start" and message["status"] >= 500:
            masked = True
            keep = [(k, v) for k, v in message.get("headers", ()) if k.lower() in _KEEP_ON_ERROR]
            slug = _SERVER_ERRORS.get(message["status"], "internal-error")
            await send_problem(send, slug, headers=keep, scope=scope)
            return
        if masked:
            return  # the internal body is dropped; the problem above was complete
        await send(message)

    return _send


class _FilteredResponse(BufferedAnswer):
    """Buffer a JSON 2xx answer of the internal app and re-serialise it through the model.

    Every 2xx with a body goes through the model; one that is not JSON fails validation (500)
    instead of slipping out unfiltered.
    """

    __slots__ = ("_route",)

    too_large = "internal response too large"

    def __init__(self, route: Route, scope: Scope, send: Send) -> None:
        super().__init__(scope, send)
        self._route = route

    async def _finish(self, start: Message, body: bytes) -> None:
        adapter = self._route.response_adapter
        if adapter is None:  # an internal invariant, not user input
            raise RuntimeError("internal invariant broken")
        try:
            value = adapter.validate_json(body)
        except ValueError:
            logger.error(
                "internal response does not match response_model of %s", self._route.template
            )
            await send_problem(self._send, "internal-error", scope=self._scope)
            return
        plain = {"type": "http.response.start", "status": start["status"]}
        await self._respond(
            {**plain, "headers": start.get("headers", ())}, adapter.dump_json(value)
        )
