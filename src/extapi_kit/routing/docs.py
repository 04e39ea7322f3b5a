"""The interactive API reference: Swagger UI served from package data under a strict CSP.

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5.x, which renders
OpenAPI 3.1 and its ``webhooks``; the older ``swagger-ui-bundle`` ships 4.15, which does not, and
has not been released since 2023). Nothing is loaded from a CDN: the page, its initializer
(``static/docs.js``) and Swagger UI's script and stylesheet are served by the registry itself,
with a Content-Security-Policy that allows scripts, styles and fetches from the same origin only
and no inline script or style (the admin console's policy).
"""

from __future__ import annotations

import functools
import html
from importlib import resources
from importlib.resources.abc import Traversable

from starlette.responses import Response

__all__ = ["DOCS_ASSETS", "DOCS_CSP", "asset_response", "reference_page"]

DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
# name -> (package that ships it, media type)
DOCS_ASSETS = {
    "swagger-ui-bundle.js": ("swagger_ui_bundle", _JS),
    "swagger-ui.css": ("swagger_ui_bundle", _CSS),
    "docs.js": ("extapi_kit.routing", _JS),
    "docs.css": ("extapi_kit.routing", _CSS),
}


def _swagger_dir() -> Traversable:
    vendor = resources.files("swagger_ui_bundle") / "vendor"
    found = sorted(p.name for p in vendor.iterdir() if p.name.startswith("swagger-ui-"))
    return vendor / found[-1]


@functools.cache
def _read(name: str) -> bytes:
    package, _ = DOCS_ASSETS[name]
    if package == "swagger_ui_bundle":
        return (_swagger_dir() / name).read_bytes()
    return (resources.files(package) / "static" / name).read_bytes()


def _headers(cache: str) -> dict[str, str]:
    return {
        "content-security-policy": DOCS_CSP,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": cache,
    }


def reference_page(title: str) -> Response:
    """Return the reference page (the shell Swagger UI renders into).

    Args:
        title: the page title (the API's title and version).
    """
    name = html.escape(title)
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{name}</title><meta name='extapi-openapi' content='openapi.json'>"
        "<link rel='stylesheet' href='docs/swagger-ui.css'>"
        "<link rel='stylesheet' href='docs/docs.css'></head><body>"
        f"<header class='extapi-docs-header'><h1>{name}</h1><p>Machine-readable: "
        "<a href='openapi.json'>openapi.json</a>. To try a call, press <b>Authorize</b> and "
        "type your API key: it stays in this page (never stored) and is sent as "
        "<code>X-API-Key</code>.</p></header><div id='swagger-ui'></div>"
        "<script src='docs/swagger-ui-bundle.js'></script>"
        "<script src='docs/docs.js'></script></body></html>"
    )
    return Response(body, media_type="text/html; charset=utf-8", headers=_headers("no-store"))


def asset_response(name: str) -> Response:
    """Return one of :data:`DOCS_ASSETS` (read once per process).

    Args:
        name: the file name.
    """
    _, media_type = DOCS_ASSETS[name]
    return Response(_read(name), media_type=media_type, headers=_headers("public, max-age=3600"))
