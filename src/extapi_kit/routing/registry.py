"""``RouteRegistry``: the description of a curated, versioned public surface.

The registry only describes: routes, tools, and what the OpenAPI document says about the API
(servers, contact, license, the webhook event catalogue). The OpenAPI document
(:mod:`~extapi_kit.routing.openapi`) and the router (:mod:`~extapi_kit.routing.router`) are built
from it, :func:`~extapi_kit.routing.build.build` wraps the router, and
:class:`~extapi_kit.routing.api.ExternalAPI` on top offers all of them as methods. Imports point
that one way (``tests/routing/test_import_direction.py``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import anyio

from extapi_kit._types import ASGIApp
from extapi_kit._units import parse_size
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.grants import ResourceLookup
from extapi_kit.routing.matcher import compile_template
from extapi_kit.routing.routes import Handler, Route
from extapi_kit.routing.settings import StackSettings
from extapi_kit.routing.upstream import Tool

__all__ = ["EventSource", "RouteRegistry"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


class EventSource(Protocol):
    """What the registry reads from a webhook event catalogue (``EventCatalogue`` fits)."""

    def list(self) -> Sequence[Any]:
        """Return the event types (``name``, ``description``, ``schema``, ``version``)."""
        ...


class RouteRegistry:
    """A registry of exposed routes: the only requests that reach anything behind it.

    Args:
        title: API title (OpenAPI ``info.title``).
        version: API release (OpenAPI ``info.version``); path versions are per route.
        prefix: public path prefix (``"/api"``); routes live at ``<prefix>/<version><path>``.
        settings: default :class:`~extapi_kit.routing.settings.StackSettings` for ``build()``.
        description: API description for the OpenAPI document.
        max_json_body: cap on a body read for validation when the route sets no ``body_limit``.
        docs: serve ``<prefix>/<version>/openapi.json`` and ``.../docs`` (the interactive
            reference) for each version.
        servers: OpenAPI ``servers``: base URLs (``"https://api.example.com"``) or mappings
            with ``url`` and ``description``.
        contact: OpenAPI ``info.contact`` (``name``, ``url``, ``email``).
        license: OpenAPI ``info.license``: an SPDX identifier (``"MIT"``) or a mapping with
            ``name`` and ``identifier`` or ``url``.
        events: the webhook event catalogue (an ``EventCatalogue``): listed as the document's
            ``webhooks`` and served publicly at ``<prefix>/<version>/webhooks/event-types``.
    """

    def __init__(
        self,
        *,
        title: str = "External API",
        version: str = "1.0.0",
        prefix: str = "/api",
        settings: StackSettings | None = None,
        description: str | None = None,
        max_json_body: int | str = "1MiB",
        docs: bool = True,
        servers: Iterable[str | Mapping[str, str]] = (),
        contact: Mapping[str, str] | None = None,
        license: str | Mapping[str, str] | None = None,
        events: EventSource | None = None,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigurationError(f"prefix must start and not end with '/': {prefix!r}")
        self.title = title
        self.version = version
        self.prefix = prefix
        self.settings = settings
        self.description = description
        self.max_json_body = parse_size(max_json_body)
        self.docs = docs
        self.servers = [_server(s) for s in servers]
        self.contact = dict(contact) if contact else None
        self.license = _license(license)
        self.events = events
        self.routes: list[Route] = []
        self.tools: dict[str, Tool] = {}
        self.idempotency_enabled = False
        # Set by build() when a credits layer is in the stack: documents the 402 answer.
        self.credits_enabled = False
        # Set when the router is compiled (routing.router.router_of); the routes are then frozen.
        self.compiled: object | None = None

    def __repr__(self) -> str:
        name, title = type(self).__name__, self.title
        return f"{name}({title!r}, {len(self.routes)} routes, {len(self.tools)} tools)"

    @property
    def versions(self) -> list[str]:
        """The declared path versions, sorted."""
        return sorted({r.version for r in self.routes})

    def add_tool(self, name: str, base_url: str, **options: Any) -> Tool:
        """Register (or replace) an upstream tool.

        Args:
            name: the tool id used by upstream routes.
            base_url: the upstream base URL.
            **options: other :class:`~extapi_kit.routing.upstream.Tool` fields (``enabled``,
                ``header_name``, ``credential``, ``timeout``, ``connect_timeout``,
                ``max_response_bytes``).
        """
        tool = Tool(name=name, base_url=base_url, **options)
        self.tools[name] = tool
        return tool

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a tool at runtime (a disabled tool answers 503).

        Args:
            name: the tool id.
            enabled: the new state.
        """
        import dataclasses

        self.tools[name] = dataclasses.replace(self.tools[name], enabled=enabled)

    def expose(
        self,
        method: str | Iterable[str],
        public_path: str,
        *,
        to: ASGIApp | None = None,
        handler: Handler | Callable[..., Any] | None = None,
        upstream: str | None = None,
        path: str | None = None,
        version: str = "v1",
        scopes: Iterable[str] = (),
        rate_class: str | None = None,
        cost: int = 1,
        body_limit: int | str | None = None,
        idempotent: bool | None = None,
        public: bool = False,
        query_model: Any = None,
        path_model: Any = None,
        request_model: Any = None,
        response_model: Any = None,
        response_media_type: str = "application/json",
        status_code: int = 200,
        summary: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        deprecated: bool | datetime = False,
        sunset: datetime | None = None,
        successor: str | None = None,
        resource_params: Mapping[str, str] | None = None,
        resource_body_fields: Mapping[str, str] | None = None,
        filter_field: Mapping[str, str] | None = None,
        resource_lookup: ResourceLookup | None = None,
        ip_allow: Iterable[str] = (),
        include_in_schema: bool = True,
        operation_id: str | None = None,
    ) -> Route:
        """Declare one route. Exactly one of ``to``, ``handler`` and ``upstream`` is required.

        Args:
            method: an HTTP method or several (upper case; ``HEAD`` is implied by ``GET``).
            public_path: the path inside the version, e.g. ``"/projects/{id}"``.
            to: an internal ASGI app to forward to (path rewritten to ``path``).
            handler: ``async def handler(request: HandlerRequest)``; sync functions run in a
                worker thread.
            upstream: a tool name, ``"{param}"`` naming the path parameter that holds the tool
                id, or an ``http(s)://`` base URL.
            path: the internal path template; defaults to ``public_path``.
            version: the version segment (``"v1"``).
            scopes: scopes a key must hold (all of them).
            rate_class: rate-limit class; None decides by method (read/write).
            cost: rate-limit cost of one call.
            body_limit: maximum request body (``"64KiB"`` or bytes).
            idempotent: ``Idempotency-Key`` handling; None: POST/PATCH when the stack has it.
            public: allow calls without a key.
            query_model: pydantic model for the query string.
            path_model: pydantic model for path parameters.
            request_model: pydantic model (or type) for the JSON body.
            response_model: pydantic model (or type) the answer is validated and filtered by;
                with ``response_media_type="text/event-stream"``, the model of one event's
                ``data`` (documented, not validated).
            response_media_type: the success answer's media type in the OpenAPI document
                (``"text/event-stream"`` for a server-sent events route).
            status_code: success status of handler targets.
            summary: OpenAPI summary.
            description: OpenAPI description.
            tags: OpenAPI tags.
            deprecated: True or the deprecation date (sends ``Deprecation``).
            sunset: when the route goes away (sends ``Sunset``).
            successor: URI of the replacement (sends ``Link; rel="successor-version"``).
            resource_params: path or query parameter -> resource type; a value outside the
                key's grants answers 404 (see ``docs/authorization.md``).
            resource_body_fields: JSON body field -> resource type, checked like
                ``resource_params`` (needs ``request_model``).
            filter_field: resource type -> item field; foreign items are dropped from answers.
            resource_lookup: ``fn(path values) -> {resource type: id}`` (sync or async) naming
                the resources that own the addressed object, e.g. the project of
                ``/assets/{id}``; for a restricted key they are checked before the target runs
                (a foreign owner answers 404, so writes on foreign objects never happen). Return
                None when the object does not exist (also 404). Unrestricted keys skip it.
            ip_allow: per-route allowed networks.
            include_in_schema: list the route in the OpenAPI document.
            operation_id: OpenAPI operationId (default derived from method and path).
        """
        if self.compiled is not None:
            raise ConfigurationError("routes cannot be added after the registry was built")
        methods = (method,) if isinstance(method, str) else tuple(method)
        for m in methods:
            if m not in _METHODS:
                raise ConfigurationError(f"unsupported or non-canonical method {m!r}")
        if sum(x is not None for x in (to, handler, upstream)) != 1:
            raise ConfigurationError("expose() needs exactly one of to=, handler=, upstream=")
        if not version or not set(version) <= _VERSION_CHARS:
            raise ConfigurationError(f"invalid version segment {version!r}")
        template = f"{self.prefix}/{version}{public_path}"
        params = set(compile_template(template).params)
        internal = path if path is not None else public_path
        missing = set(compile_template(internal).params) - params
        if missing:
            raise ConfigurationError(f"internal path uses unknown parameters: {sorted(missing)}")
        if upstream is not None and upstream.startswith("{"):
            if upstream.strip("{}") not in params:
                raise ConfigurationError(f"upstream {upstream!r} names no path parameter")
        elif upstream is not None and upstream.startswith(("http://", "https://")):
            self.tools.setdefault(upstream, Tool(name=upstream, base_url=upstream))
        elif upstream is not None and upstream not in self.tools:
            raise ConfigurationError(f"unknown tool {upstream!r}; call add_tool() first")
        if resource_body_fields and request_model is None:
            raise ConfigurationError("resource_body_fields needs request_model=")
        _check_query_resources(resource_params, params, query_model)
        route = Route(
            methods=methods,
            version=version,
            path=public_path,
            template=template,
            kind="app" if to is not None else "handler" if handler is not None else "upstream",
            app=to,
            handler=_as_async(handler) if handler is not None else None,
            upstream=upstream,
            internal_path=internal,
            scopes=tuple(scopes),
            rate_class=rate_class,
            cost=cost,
            body_limit=parse_size(body_limit) if body_limit is not None else None,
            idempotent=idempotent,
            public=public,
            ip_allow=tuple(ip_allow),
            query_model=query_model,
            path_model=path_model,
            request_model=request_model,
            response_model=response_model,
            response_media_type=response_media_type,
            status_code=status_code,
            summary=summary,
            description=description,
            tags=tuple(tags),
            deprecated=deprecated,
            sunset=sunset,
            successor=successor,
            resource_params=dict(resource_params) if resource_params else None,
            resource_body_fields=dict(resource_body_fields) if resource_body_fields else None,
            filter_field=dict(filter_field) if filter_field else None,
            resource_lookup=resource_lookup,
            include_in_schema=include_in_schema,
            operation_id=operation_id,
        )
        route.prepare()
        self.routes.append(route)
        return route

    def route(
        self, method: str | Iterable[str], public_path: str, **options: Any
    ) -> Callable[[Any], Any]:
        """Decorator form of :meth:`expose` for handler targets.

        Args:
            method: the HTTP method(s).
            public_path: the path inside the version.
            **options: any :meth:`expose` keyword except the target.
        """

        def decorator(fn: Any) -> Any:
            self.expose(method, public_path, handler=fn, **options)
            return fn

        return decorator

    def get(self, public_path: str, **options: Any) -> Callable[[Any], Any]:
        """Decorator declaring a GET handler route.

        Args:
            public_path: the path inside the version.
            **options: :meth:`expose` keywords.
        """
        return self.route("GET", public_path, **options)

    def post(self, public_path: str, **options: Any) -> Callable[[Any], Any]:
        """Decorator declaring a POST handler route.

        Args:
            public_path: the path inside the version.
            **options: :meth:`expose` keywords.
        """
        return self.route("POST", public_path, **options)

    def put(self, public_path: str, **options: Any) -> Callable[[Any], Any]:
        """Decorator declaring a PUT handler route.

        Args:
            public_path: the path inside the version.
            **options: :meth:`expose` keywords.
        """
        return self.route("PUT", public_path, **options)

    def patch(self, public_path: str, **options: Any) -> Callable[[Any], Any]:
        """Decorator declaring a PATCH handler route.

        Args:
            public_path: the path inside the version.
            **options: :meth:`expose` keywords.
        """
        return self.route("PATCH", public_path, **options)

    def delete(self, public_path: str, **options: Any) -> Callable[[Any], Any]:
        """Decorator declaring a DELETE handler route.

        Args:
            public_path: the path inside the version.
            **options: :meth:`expose` keywords.
        """
        return self.route("DELETE", public_path, **options)


def _server(server: str | Mapping[str, str]) -> dict[str, str]:
    out = {"url": server} if isinstance(server, str) else dict(server)
    if not out.get("url"):
        raise ConfigurationError(f"a server needs a url: {server!r}")
    return out


def _license(value: str | Mapping[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    # OpenAPI 3.1 info.license: a name, plus an SPDX identifier or a URL (not both).
    out = {"name": value, "identifier": value} if isinstance(value, str) else dict(value)
    if not out.get("name"):
        raise ConfigurationError(f"a license needs a name: {value!r}")
    if "identifier" in out and "url" in out:
        raise ConfigurationError("a license has an identifier or a url, not both")
    return out


def _check_query_resources(
    resource_params: Mapping[str, str] | None, path_params: set[str], query_model: Any
) -> None:
    """A resource name outside the path is a query parameter: the query model must know it."""
    if not resource_params or query_model is None:
        return
    known = set(query_model.model_fields)
    known |= {f.alias for f in query_model.model_fields.values() if f.alias}
    unknown = sorted(set(resource_params) - path_params - known)
    if unknown:
        raise ConfigurationError(f"resource_params name no path or query parameter: {unknown}")


def _as_async(fn: Callable[..., Any]) -> Handler:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def call_in_thread(*args: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))

    return call_in_thread
