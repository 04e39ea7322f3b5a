"""FastAPI integration: dependencies that read the verified principal, and the OpenAPI scheme.

:class:`~extapi_kit.middleware.api_key.ApiKeyMiddleware` does the authentication; these
dependencies only read what it put on the request context, so a route never verifies a key twice::

    from fastapi import Depends, FastAPI
    from extapi_kit.fastapi import require_principal
    from extapi_kit.middleware.api_key import ApiKeyMiddleware

    app = FastAPI()
    app.add_middleware(ApiKeyMiddleware, store="sqlite:///extapi-kit.db", public_paths=["/docs*"])

    @app.get("/projects")
    async def projects(principal = Depends(require_principal("projects:read"))):
        return {"owner": principal.owner}

Using a dependency also adds the ``ApiKey`` security scheme (an ``X-API-Key`` header) to the
OpenAPI document, so the docs UI offers an "Authorize" button. FastAPI is optional: importing
this module works without it, calling these functions raises ConfigurationError.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from fastapi.security import APIKeyHeader

__all__ = ["api_key_scheme", "get_principal", "require_principal"]

_CHALLENGE = 'Bearer realm="api", ApiKey header="X-API-Key"'


def _fastapi() -> Any:
    try:
        import fastapi
        import fastapi.security
    except ImportError as exc:  # pragma: no cover - exercised only without fastapi
        raise ConfigurationError(
            "the FastAPI integration needs FastAPI: pip install fastapi"
        ) from exc
    return fastapi


def api_key_scheme(header: str = "X-API-Key", *, scheme_name: str = "ApiKey") -> APIKeyHeader:
    """Return the OpenAPI security scheme describing the API-key header.

    Args:
        header: the header the middleware reads.
        scheme_name: the name of the scheme in ``components.securitySchemes``.
    """
    fastapi = _fastapi()
    scheme: APIKeyHeader = fastapi.security.APIKeyHeader(
        name=header,
        scheme_name=scheme_name,
        description="An extapi-kit API key (also accepted as `Authorization: Bearer <key>`).",
        auto_error=False,
    )
    return scheme


def _with_signature(
    fn: Callable[..., Awaitable[Any]], header: str, scheme_name: str
) -> Callable[..., Awaitable[Any]]:
    # Build the signature by hand: annotations must be real objects, not strings, because this
    # module uses postponed evaluation and FastAPI resolves strings in the module's globals.
    fastapi = _fastapi()
    params = [
        inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=fastapi.Request
        ),
        inspect.Parameter(
            "_api_key",
            inspect.Parameter.KEYWORD_ONLY,
            default=fastapi.Security(api_key_scheme(header, scheme_name=scheme_name)),
            annotation=str | None,
        ),
    ]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def get_principal(
    *, header: str = "X-API-Key", scheme_name: str = "ApiKey"
) -> Callable[..., Awaitable[Principal | None]]:
    """Return a dependency giving the request's principal, or None on a public route.

    Args:
        header: the header named in the OpenAPI scheme.
        scheme_name: the OpenAPI scheme name.
    """

    async def dependency(request: Any, _api_key: str | None = None) -> Principal | None:
        return get_context(request.scope).principal

    return _with_signature(dependency, header, scheme_name)


def require_principal(
    *scopes: str, header: str = "X-API-Key", scheme_name: str = "ApiKey"
) -> Callable[..., Awaitable[Principal]]:
    """Return a dependency requiring an authenticated principal holding every given scope.

    The middleware normally refuses first; this is the route-level second line (e.g. on a path
    the middleware treats as public). It answers 401 without a principal and 403 without a scope.

    Args:
        *scopes: scopes the route needs (wildcards in granted scopes apply).
        header: the header named in the OpenAPI scheme.
        scheme_name: the OpenAPI scheme name.
    """
    fastapi = _fastapi()

    async def dependency(request: Any, _api_key: str | None = None) -> Principal:
        principal = get_context(request.scope).principal
        if principal is None:
            raise fastapi.HTTPException(
                status_code=401,
                detail="A valid API key is required.",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        missing = [s for s in scopes if not principal.has_scope(s)]
        if missing:
            raise fastapi.HTTPException(
                status_code=403,
                detail="This API key lacks the required scope: " + ", ".join(missing),
            )
        return principal

    return _with_signature(dependency, header, scheme_name)
