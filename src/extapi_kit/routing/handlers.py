"""Handler targets: ``async def handler(request: HandlerRequest)`` with pydantic in and out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.context import Principal, RequestContext
from extapi_kit.exceptions import ProblemError
from extapi_kit.problems import send_problem
from extapi_kit.routing.grants import allowed_ids, grant_predicate
from extapi_kit.routing.routes import Route
from extapi_kit.routing.targets import send_problem_error

__all__ = ["HandlerRequest", "call_handler"]

logger = logging.getLogger("extapi_kit.routing")


@dataclass(slots=True)
class HandlerRequest:
    """What a handler target receives.

    Args:
        method: the request method.
        path_params: matched path parameters (or the ``path_model`` instance's values).
        query: the validated ``query_model`` instance, or None.
        body: the validated ``request_model`` value, or None.
        principal: the verified key's principal (None on public routes).
        ctx: the request context.
        scope: the ASGI scope (read-only by convention).
    """

    method: str
    path_params: Mapping[str, Any]
    query: Any
    body: Any
    principal: Principal | None
    ctx: RequestContext
    scope: Scope = field(repr=False)

    def allowed_ids(self, kind: str) -> frozenset[str] | None:
        """Return the ids of ``kind`` this key may see, or None when it is unrestricted.

        Args:
            kind: the resource type, e.g. ``"projects"``.
        """
        return allowed_ids(self.principal, kind)

    def grant_filter(self, kind: str, field: str) -> Callable[[Any], bool] | None:
        """Return a predicate for ``paginate(..., where=...)`` (None: nothing to filter).

        Args:
            kind: the resource type.
            field: the item field holding the resource id.
        """
        return grant_predicate(self.principal, kind, field)

    def header(self, name: str) -> str | None:
        """Return a request header (latin-1 decoded) or None.

        Args:
            name: header name, any case.
        """
        key = name.lower().encode("latin-1")
        for k, v in self.scope.get("headers", ()):
            if k == key:
                return bytes(v).decode("latin-1")
        return None


async def call_handler(
    route: Route, scope: Scope, receive: Receive, send: Send, req: HandlerRequest
) -> None:
    """Call a handler target and send its result.

    The result may be a Starlette ``Response`` (sent as is), None (204), or any value that is
    serialised through ``response_model`` when declared, which drops every field the model
    does not name (OWASP API3), or as JSON otherwise.

    Args:
        route: the matched route (``kind == "handler"``).
        scope: the request scope.
        receive: the ASGI receive.
        send: the ASGI send.
        req: the handler request.
    """
    if not (route.handler is not None):  # an internal invariant, not user input
        raise RuntimeError("set by expose() for handler targets")
    try:
        result = await route.handler(req)
    except ProblemError as exc:
        await send_problem_error(send, exc, scope)
        return
    if callable(result) and not isinstance(result, BaseModel | dict | list):
        await result(scope, receive, send)
        return
    if result is None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    adapter = route.response_adapter
    try:
        if adapter is not None:
            body = adapter.dump_json(adapter.validate_python(result, from_attributes=True))
        else:
            body = to_json(result)
    except ValueError:
        logger.exception("handler result does not match response_model of %s", route.template)
        await send_problem(send, "internal-error", scope=scope)
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": route.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if req.method == "HEAD" else body})
