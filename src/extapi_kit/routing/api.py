"""``ExternalAPI``: declare a curated, versioned public surface over internal services.

The facade on top of the routing package: a :class:`~extapi_kit.routing.registry.RouteRegistry`
(the description) that also offers what is built from it as methods: its router, its OpenAPI
document, and the full stack from :func:`~extapi_kit.routing.build.build`. Nothing below imports
this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.build import build
from extapi_kit.routing.openapi import openapi_document
from extapi_kit.routing.registry import RouteRegistry
from extapi_kit.routing.router import RegistryRouter, router_of
from extapi_kit.routing.routes import Route

__all__ = ["ExternalAPI"]


class ExternalAPI(RouteRegistry):
    """A registry of exposed routes: the only requests that reach anything behind it.

    Takes the keyword arguments of :class:`~extapi_kit.routing.registry.RouteRegistry`
    (``title``, ``version``, ``prefix``, ``settings``, ``description``, ``max_json_body``,
    ``docs``, ``servers``, ``contact``, ``license``, ``events``).
    """

    #: The OAuth token endpoint served beside the API (set by ``oauth()``), or None.
    oauth_endpoint: Any = None
    _oauth_route_ids: frozenset[int] = frozenset()

    @property
    def router(self) -> RegistryRouter:
        """The registry's innermost ASGI app (compiled on first use; routes are then frozen)."""
        return router_of(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the registry without any middleware (tests, or a stack you compose yourself).

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive.
            send: the ASGI send.
        """
        await router_of(self)(scope, receive, send)

    def graphql(
        self,
        path: str = "/graphql",
        *,
        schema: Any,
        version: str = "v1",
        scopes: Iterable[str] = (),
        rate_class: str | None = None,
        body_limit: int | str = "64KiB",
        explorer: bool = True,
        summary: str = "GraphQL endpoint",
        **options: Any,
    ) -> Any:
        """Serve a GraphQL schema at ``<prefix>/<version><path>`` behind the whole stack.

        ``POST`` runs operations (see docs/graphql.md); with ``explorer``, ``GET
        <path>/explorer`` serves a self-contained explorer page (public, holds no data). The
        rate limiter and the quota are charged each operation's computed cost, in the ``read``
        class for queries and the ``write`` class for mutations unless ``rate_class`` is set.
        Needs the ``graphql`` extra.

        Args:
            path: the path inside the version.
            schema: a graphql-core ``GraphQLSchema`` or a ready ``GraphQLEndpoint``.
            version: the version segment.
            scopes: scopes every operation needs (fields add their own).
            rate_class: one rate class for every operation (default: by operation type).
            body_limit: largest request body.
            explorer: also serve the explorer page.
            summary: the route's summary.
            **options: :class:`~extapi_kit.graphql.GraphQLEndpoint` keywords (``limits``,
                ``persisted``, ``introspection``, ``batching``, ``context``, ...).

        Returns:
            The :class:`~extapi_kit.graphql.GraphQLEndpoint`.
        """
        # Lazy: the core package works without graphql-core (the ``graphql`` extra).
        from extapi_kit._units import parse_size
        from extapi_kit.graphql import GraphQLEndpoint, explorer_page

        limit = parse_size(body_limit)
        if isinstance(schema, GraphQLEndpoint):
            endpoint = schema
        else:
            endpoint = GraphQLEndpoint(schema, max_body=limit, **options)

        async def serve(request: Any) -> Any:
            return endpoint

        route = self.expose(
            "POST", path, handler=serve, version=version, scopes=scopes, rate_class=rate_class,
            body_limit=limit, idempotent=False, summary=summary, tags=["graphql"],
            include_in_schema=False,
        )  # fmt: skip
        route.extra = {**route.extra, "cost_hook": endpoint.cost_hook, "graphql": True}
        if explorer:
            from starlette.responses import HTMLResponse

            from extapi_kit.graphql.explorer import EXPLORER_CSP

            page = explorer_page(f"{self.prefix}/{version}{path}", title=f"{self.title} GraphQL")

            async def show(request: Any) -> Any:
                return HTMLResponse(page, headers={"content-security-policy": EXPLORER_CSP})

            self.expose(
                "GET", f"{path}/explorer", handler=show, version=version, public=True,
                include_in_schema=False, summary="GraphQL explorer", tags=["graphql"],
            )  # fmt: skip
        return endpoint

    def openapi(self, version: str = "v1") -> dict[str, Any]:
        """Return the OpenAPI 3.1 document of one version (exactly its reachable routes).

        Args:
            version: the version segment.
        """
        return openapi_document(self, version, router_of(self).routes_for(version))

    @property
    def versions(self) -> list[str]:
        """The declared path versions, sorted (the OAuth endpoints belong to none)."""
        return sorted({r.version for r in self.routes if id(r) not in self._oauth_route_ids})

    @property
    def oauth_paths(self) -> tuple[str, ...]:
        """Paths of the OAuth endpoints added by ``oauth()`` (none before)."""
        return tuple(self.oauth_endpoint.paths) if self.oauth_endpoint is not None else ()

    def oauth(self, issuer: Any, *, rate_class: str | None = None, **options: Any) -> Any:
        """Serve OAuth 2.0 client credentials beside the API: token endpoint, JWKS, metadata.

        Adds ``POST /oauth/token``, ``GET /.well-known/jwks.json`` and ``GET
        /.well-known/oauth-authorization-server`` (outside ``prefix``: serve the built stack at
        the root of the host) as public routes: the API-key layer leaves them to the endpoint,
        which authenticates clients itself (RFC 6749 errors), while audit, body limit, networks
        and per-IP rate limits apply as on any public route. The OpenAPI document then lists the
        ``oauth2`` client credentials scheme beside the key schemes. See ``docs/oauth.md``.

        Args:
            issuer: a :class:`~extapi_kit.oauth.TokenIssuer` or a ready
                :class:`~extapi_kit.oauth.TokenEndpoint`.
            rate_class: rate-limit class of the three routes (default: by method).
            **options: keyword arguments of :class:`~extapi_kit.oauth.TokenEndpoint`
                (``token_path``, ``jwks_path``, ``metadata_path``, ``jwks_max_age``, ...).

        Returns:
            The :class:`~extapi_kit.oauth.TokenEndpoint`.
        """
        from extapi_kit.oauth.endpoint import TokenEndpoint

        if self.compiled is not None:
            raise ConfigurationError("oauth() must be called before the registry is built")
        if self.oauth_endpoint is not None:
            raise ConfigurationError("oauth() was already called on this registry")
        endpoint = issuer if isinstance(issuer, TokenEndpoint) else TokenEndpoint(issuer, **options)

        async def serve(request: Any) -> Any:
            return endpoint  # an ASGI app: called with the request's own scope and body

        added = []
        for path, method in zip(endpoint.paths, ("POST", "GET", "GET"), strict=True):
            route = Route(
                methods=(method,),
                version="v1",
                path=path,
                template=path,
                kind="handler",
                handler=serve,
                internal_path=path,
                rate_class=rate_class,
                body_limit=16384,
                idempotent=False,
                public=True,
                include_in_schema=False,
            )
            route.prepare()
            added.append(route)
        self.routes.extend(added)
        self._oauth_route_ids = frozenset(map(id, added))
        self.oauth_endpoint = endpoint
        return endpoint

    def build(self, **options: Any) -> ASGIApp:
        """Return the registry wrapped in the full middleware stack (see :func:`build`).

        Args:
            **options: keyword arguments of :func:`extapi_kit.routing.build.build`.
        """
        return build(self, **options)

    def mount_into(self, app: Any, **options: Any) -> ASGIApp:
        """Mount the built stack into a Starlette app at ``prefix``; return the built stack.

        Args:
            app: a Starlette (or FastAPI) application.
            **options: keyword arguments of :meth:`build`.
        """
        from starlette.routing import Mount

        built = self.build(**options)
        app.router.routes.insert(0, Mount(self.prefix, app=built))
        return built

    async def aclose(self) -> None:
        """Close the upstream HTTP client (also done on lifespan shutdown)."""
        if isinstance(self.compiled, RegistryRouter):
            await self.compiled.aclose()
