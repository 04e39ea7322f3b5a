"""The route registry: a curated, versioned external API over internal services.

Declare routes on an :class:`ExternalAPI` (forward to an internal ASGI app, call a handler, or
proxy to an upstream tool), then :func:`build` the full middleware stack around it.
"""

from __future__ import annotations

from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.build import StackSettings, build
from extapi_kit.routing.grants import allowed_ids, grant_predicate, is_granted
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.pagination import CursorCodec, ListParams, Page, paginate
from extapi_kit.routing.router import RegistryRouter, RouteResolverMiddleware
from extapi_kit.routing.routes import Route
from extapi_kit.routing.upstream import Tool

__all__ = [
    "CursorCodec",
    "ExternalAPI",
    "HandlerRequest",
    "ListParams",
    "Page",
    "RegistryRouter",
    "Route",
    "RouteResolverMiddleware",
    "StackSettings",
    "Tool",
    "allowed_ids",
    "build",
    "grant_predicate",
    "is_granted",
    "paginate",
]
