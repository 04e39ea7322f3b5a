"""The registry's ASGI app and the resolver step that matches each request once.

:class:`RouteResolverMiddleware` is the outermost layer of :func:`~extapi_kit.routing.build`:
it matches the request, puts the route's :class:`~extapi_kit.context.RouteSettings` on the
request context before any other middleware runs, and leaves the match on the scope so the
:class:`RegistryRouter` at the bottom of the stack reuses it instead of matching again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from extapi_kit._asgi import close_websocket, get_header
from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.context import SCOPE_KEY, RequestContext, RouteSettings, get_context
from extapi_kit.exceptions import ProblemError
from extapi_kit.problems import send_problem
from extapi_kit.routing.grant_filter import (
    GrantFilteredResponse,
    restrictions,
    uniform_not_found,
)
from extapi_kit.routing.grants import GrantSpec, check_body, check_lookup, check_request
from extapi_kit.routing.handlers import HandlerRequest, call_handler
from extapi_kit.routing.matcher import Matcher
from extapi_kit.routing.openapi import meta_routes
from extapi_kit.routing.paths import render_parts
from extapi_kit.routing.registry import RouteRegistry
from extapi_kit.routing.routes import Route, RouteEntry
from extapi_kit.routing.targets import call_app, send_problem_error, with_headers
from extapi_kit.routing.upstream import build_url, proxy_request
from extapi_kit.routing.validation import parse_query, validate_body, validate_model

__all__ = ["MATCH_KEY", "RegistryRouter", "RouteResolverMiddleware", "router_of"]

# Scope key holding ``(path, method, entry, params, allowed)`` from the one match per request.
MATCH_KEY = "extapi_kit.route_match"
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
Match = tuple[str, str, RouteEntry | None, dict[str, str], frozenset[str]]

logger = logging.getLogger("extapi_kit.routing")


class RegistryRouter:
    """The innermost app: dispatches matched requests to their targets; 404/405 otherwise.

    Args:
        api: the :class:`~extapi_kit.routing.registry.RouteRegistry` to serve (compiled here).
    """

    def __init__(self, api: RouteRegistry) -> None:
        self.api = api
        self._routes: list[Route] = list(api.routes)
        if api.docs:
            for version in api.versions:
                self._routes.extend(meta_routes(api, version, self.routes_for))
        entries: list[tuple[str, str, RouteEntry]] = []
        for route in self._routes:
            for method in route.methods:
                settings = route.settings(method, api.idempotency_enabled)
                entries.append((route.template, method, RouteEntry(route, settings)))
        self.matcher = Matcher(entries)
        self._client: httpx.AsyncClient | None = None
        # Replaced by build() with the one resolver the whole stack shares.
        self.client_ip = ClientIPResolver()

    def routes_for(self, version: str) -> list[Route]:
        """Return the compiled routes of one version (declared and meta routes).

        Args:
            version: the version segment.
        """
        return [r for r in self._routes if r.version == version]

    def resolve(self, scope: Scope) -> Match:
        """Match a request once, record its settings on the context and the match on the scope.

        Args:
            scope: an ``http`` or ``websocket`` scope.
        """
        path, method = scope["path"], scope.get("method", "GET")
        entry, params, allowed = self.matcher.match(path, method)
        ctx = get_context(scope)
        if entry is not None:
            s = entry.settings
            if params:
                # Positional construction: ~5x cheaper than dataclasses.replace on this path.
                s = RouteSettings(
                    s.template,
                    s.method,
                    s.scopes,
                    s.rate_class,
                    s.cost,
                    s.body_limit,
                    s.idempotent,
                    s.public,
                    s.ip_allow,
                    params,
                    s.extra,
                )
            ctx.route = s
        match: Match = (path, method, entry, params, allowed)
        scope[MATCH_KEY] = match
        return match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind == "websocket":
            await close_websocket(send)
            return
        if kind != "http":
            return
        match = scope.get(MATCH_KEY)
        if match is None or match[0] != scope["path"] or match[1] != scope["method"]:
            match = self.resolve(scope)
        _, method, entry, params, allowed = match
        if entry is None:
            if allowed:
                if "GET" in allowed:
                    allowed = allowed | {"HEAD"}
                allow = ", ".join(sorted(allowed)).encode()
                await send_problem(
                    send, "method-not-allowed", headers=[(b"allow", allow)], scope=scope
                )
            else:
                await send_problem(send, "not-found", scope=scope)
            return
        route = entry.route
        if route.response_headers:
            send = with_headers(send, route.response_headers)
        try:
            await self._dispatch(route, method, params, scope, receive, send)
        except ProblemError as exc:
            await send_problem_error(send, exc, scope)

    async def _dispatch(
        self,
        route: Route,
        method: str,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        path_values: dict[str, Any] = params
        if route.path_model is not None:
            path_values = validate_model(route.path_model, params, "path").model_dump()
        query = None
        if route.query_model is not None:
            query = validate_model(
                route.query_model,
                parse_query(scope.get("query_string", b""), route.query_multi),
                "query",
            )
        ctx: RequestContext = scope[SCOPE_KEY]
        spec = route.grants
        if spec is not None:
            if (spec.path or spec.query) and not check_request(
                spec, ctx, params, path_values, scope.get("query_string", b""), query
            ):
                await send_problem(send, "not-found", scope=scope)
                return
            if spec.lookup is not None and not await check_lookup(spec, ctx, path_values):
                await send_problem(send, "not-found", scope=scope)
                return
            send = _grant_send(spec, ctx, scope, send)
        body_value: Any = None
        forward_body: bytes | None = None
        if route.request_adapter is not None and method not in _NO_BODY_METHODS:
            raw = await _read_body(receive, route.body_limit or self.api.max_json_body)
            if raw is None:
                return  # client disconnected: nothing runs
            body_value = validate_body(
                route.request_adapter, raw, get_header(scope, b"content-type")
            )
            # The internal service receives the validated body, so fields the model does not
            # declare never reach it (mass assignment, OWASP API3).
            forward_body = route.request_adapter.dump_json(
                body_value, by_alias=True, exclude_unset=True
            )
            if spec is not None and spec.body:
                if not check_body(spec, ctx, route.request_adapter, body_value):
                    await send_problem(send, "not-found", scope=scope)
                    return
        if route.kind == "handler":
            req = HandlerRequest(method, path_values, query, body_value, ctx.principal, ctx, scope)
            await call_handler(route, scope, receive, send, req)
        elif route.kind == "app":
            await call_app(route, scope, receive, send, params, forward_body, self.client_ip)
        else:
            await self._upstream(route, params, scope, receive, send, forward_body)

    async def _upstream(
        self,
        route: Route,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes | None,
    ) -> None:
        name = route.upstream or ""
        if name.startswith("{"):
            name = params.get(name.strip("{}"), "")
        tool = self.api.tools.get(name)
        if tool is None:
            await send_problem(send, "not-found", scope=scope)
            return
        if not tool.enabled:
            await send_problem(send, "service-unavailable", "tool is disabled", scope=scope)
            return
        _, raw_path = render_parts(route.internal_parts, params)
        url = build_url(tool, raw_path.decode("ascii"), scope.get("query_string", b""))
        await proxy_request(self._http(), tool, url, scope, receive, send, body)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        """Close the upstream HTTP client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def router_of(api: RouteRegistry) -> RegistryRouter:
    """Return the registry's router, compiling it (and freezing the routes) on first use.

    Args:
        api: the registry.
    """
    compiled = api.compiled
    if isinstance(compiled, RegistryRouter):
        return compiled
    router = RegistryRouter(api)
    api.compiled = router
    return router


def _grant_send(spec: GrantSpec, ctx: RequestContext, scope: Scope, send: Send) -> Send:
    """Wrap ``send``: uniform 404s, and foreign items dropped for a restricted key."""
    if spec.filters:
        rules = restrictions(spec, ctx.principal)
        if rules:
            send = GrantFilteredResponse(rules, scope, send).send
    return uniform_not_found(send, scope)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    body = bytearray()
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise ProblemError(_too_large(), detail=f"body exceeds {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def _too_large() -> Any:
    from extapi_kit.problems import PROBLEMS

    return PROBLEMS["request-too-large"]


class RouteResolverMiddleware:
    """Match each request once and publish the route's settings before any other layer runs.

    Args:
        app: the rest of the stack (its innermost app is ``router``).
        router: the registry router whose matcher is used and whose match is reused.
        closers: coroutines run at lifespan shutdown, before the server hears it completed
            (``build()`` passes the layers' ``aclose`` so their stores' connections are closed).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        router: RegistryRouter,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.app = app
        self.router = router
        self.closers = tuple(closers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.router.resolve(scope)
        elif scope["type"] == "lifespan" and self.closers:
            await self.app(scope, receive, self._closing_send(send))
            return
        await self.app(scope, receive, send)

    def _closing_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                for close in self.closers:
                    try:
                        await close()
                    except Exception:
                        logger.warning("closing a layer's store failed", exc_info=True)
            await send(message)

        return wrapped
