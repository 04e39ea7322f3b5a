"""``ExternalAPI``: declare a curated, versioned public surface over internal services.

The facade on top of the routing package: a :class:`~extapi_kit.routing.registry.RouteRegistry`
(the description) that also offers what is built from it as methods: its router, its OpenAPI
document, and the full stack from :func:`~extapi_kit.routing.build.build`. Nothing below imports
this module.
"""

from __future__ import annotations

from typing import Any

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.routing.build import build
from extapi_kit.routing.openapi import openapi_document
from extapi_kit.routing.registry import RouteRegistry
from extapi_kit.routing.router import RegistryRouter, router_of

__all__ = ["ExternalAPI"]


class ExternalAPI(RouteRegistry):
    """A registry of exposed routes: the only requests that reach anything behind it.

    Takes the keyword arguments of :class:`~extapi_kit.routing.registry.RouteRegistry`
    (``title``, ``version``, ``prefix``, ``settings``, ``description``, ``max_json_body``,
    ``docs``, ``servers``, ``contact``, ``license``, ``events``).
    """

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

    def openapi(self, version: str = "v1") -> dict[str, Any]:
        """Return the OpenAPI 3.1 document of one version (exactly its reachable routes).

        Args:
            version: the version segment.
        """
        return openapi_document(self, version, router_of(self).routes_for(version))

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
