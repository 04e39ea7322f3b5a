"""OpenAPI 3.1 for exactly the exposed surface of one version, and the routes that serve it.

The document is generated from the same compiled route list the router matches against, so the
set of ``(method, path)`` it lists is the set that is reachable (case Z4); ``HEAD`` is implied
wherever ``GET`` is listed. Every operation declares the schema of what it answers (page
envelopes, server-sent events, none for a 204), so a client generator can type every call (G5);
the webhook event catalogue becomes the document's ``webhooks``. The interactive reference page
itself lives in :mod:`~extapi_kit.routing.docs`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

from extapi_kit.exceptions import ProblemError
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.docs import DOCS_ASSETS, asset_response, reference_page
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.registry import RouteRegistry
from extapi_kit.routing.routes import Route

__all__ = ["EventTypeList", "EventTypeOut", "meta_routes", "openapi_document"]

_REF_TEMPLATE = "#/components/schemas/{model}"
_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")
_CONVERTER_SCHEMAS = {
    "str": {"type": "string"},
    "int": {"type": "integer", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string"},
}
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["type", "title", "status"],
}
_ERRORS = {
    "400": "Bad request",
    "402": "Credits exhausted: the balance cannot pay this call's cost (a top-up is needed; "
    "waiting does not help)",
    "401": "Missing or invalid API key",
    "403": "Key lacks a required scope or network",
    "404": "Not found",
    "413": "Request body too large",
    "415": "Unsupported media type",
    "422": "Validation failed",
    "429": "Rate limit exceeded",
    "502": "Upstream failed",
    "503": "Service unavailable",
    "504": "Upstream timed out",
}
_CREDITS_HEADER = {
    "description": "Credits left on the key's (or its owner's) balance",
    "schema": {"type": "integer", "minimum": 0},
}
_RATE_HEADERS = {
    "RateLimit": {
        "description": "Remaining quota (draft-ietf-httpapi-ratelimit-headers)",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {"description": "Quota policy", "schema": {"type": "string"}},
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}

    def ref(self, tp: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(tp).json_schema(ref_template=_REF_TEMPLATE, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            # ``Page[Item]`` -> ``Page_Item``: component names are [A-Za-z0-9._-] (OpenAPI 3.1).
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", tp.__name__).strip("_")
            self.components[name] = schema
            return {"$ref": _REF_TEMPLATE.format(model=name)}
        return schema


def _problem_response(
    description: str, extra_headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
    if extra_headers:
        out["headers"] = extra_headers
    return out


def _parameters(
    route: Route, method: str, api: RouteRegistry, schemas: _Schemas
) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    path_props: dict[str, Any] = {}
    if route.path_model is not None:
        path_props = route.path_model.model_json_schema().get("properties", {})
    for m in _PARAM_RE.finditer(route.template):
        name, conv = m.group(1), m.group(2) or "str"
        schema = path_props.get(name, _CONVERTER_SCHEMAS[conv])
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if route.query_model is not None:
        full = route.query_model.model_json_schema(ref_template=_REF_TEMPLATE)
        schemas.components.update(full.pop("$defs", {}))
        required = set(full.get("required", ()))
        for name, schema in full.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    if route.is_idempotent(method, api.idempotency_enabled):
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes a retry safe (draft-ietf-httpapi-idempotency-key-header)",
                "schema": {"type": "string", "maxLength": 255},
            }
        )
    return params


def _operation(route: Route, method: str, api: RouteRegistry, schemas: _Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id or _operation_id(method, route.template),
        "responses": {},
    }
    if route.summary:
        op["summary"] = route.summary
    desc = route.description or ""
    if route.scopes:
        desc = (
            (desc + "\n\n" if desc else "")
            + "Required scopes: "
            + ", ".join(f"`{s}`" for s in route.scopes)
        )
    if desc:
        op["description"] = desc
    if route.tags:
        op["tags"] = list(route.tags)
    if route.deprecated is not False:
        op["deprecated"] = True
    op["x-required-scopes"] = list(route.scopes)
    if route.public:
        op["security"] = []
    else:
        op["security"] = [{"ApiKeyHeader": list(route.scopes)}, {"BearerKey": list(route.scopes)}]
        if getattr(api, "oauth_endpoint", None) is not None:
            op["security"].append({"OAuth2": list(route.scopes)})
    params = _parameters(route, method, api, schemas)
    if params:
        op["parameters"] = params
    if route.request_model is not None and method not in ("GET", "HEAD", "DELETE"):
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": schemas.ref(route.request_model, "validation")}
            },
        }
    # A proxied tool answers with the upstream's own 2xx status and JSON, whatever they are.
    success = "2XX" if route.kind == "upstream" else str(route.status_code)
    op["responses"][success] = _success(route, schemas)
    codes = ["404", "413", "429"]
    if not route.public:
        codes[:0] = ["401", "403"]
    if route.query_model or route.path_model or route.request_model:
        codes += ["400", "415", "422"]
    if route.kind == "upstream":
        codes += ["502", "503", "504"]
    if api.credits_enabled and not route.public:
        codes.append("402")
    for code in sorted(set(codes)):
        headers = dict(_RATE_HEADERS) if code == "429" else None
        if code == "402":
            headers = {"Credits-Remaining": _CREDITS_HEADER}
        if code == "429" and headers is not None:
            headers["Retry-After"] = {
                "description": "Seconds to wait",
                "schema": {"type": "integer"},
            }
        text = _ERRORS[code]
        if code == "404" and route.grants is not None:
            text = _GRANT_404
        op["responses"][code] = _problem_response(text, headers)
    if route.grants is not None:
        op["x-resource-grants"] = _grant_extension(route)
    if route.cost != 1:
        # What one call spends of the rate limit, the quota and the credit balance.
        op["x-cost"] = route.cost
    return op


_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event (text/event-stream)",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def _success(route: Route, schemas: _Schemas) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success", "headers": dict(_RATE_HEADERS)}
    if route.status_code == 204:
        ok["description"] = "Done (no content)"
        return ok
    media = route.response_media_type
    if media == "text/event-stream":
        # The body is a stream of events: ``schema`` constrains nothing (validators such as
        # schemathesis read it as the list of parsed events; generated clients hand back the
        # text), ``itemSchema`` (OpenAPI 3.2, read on 3.1 documents too) describes one event,
        # and x-event-schema names the model of each event's JSON ``data`` line.
        content: dict[str, Any] = {
            "schema": {"description": "Server-sent events (text/event-stream)"},
            "itemSchema": _SSE_EVENT,
        }
        if route.response_model is not None:
            content["x-event-schema"] = schemas.ref(route.response_model, "serialization")
        ok["content"] = {media: content}
    elif route.response_model is not None:
        ok["content"] = {media: {"schema": schemas.ref(route.response_model, "serialization")}}
    elif media.startswith("text/"):
        ok["content"] = {media: {"schema": {"type": "string"}}}
    else:
        # Undeclared: the target's JSON as it is (a client gets it parsed, untyped).
        ok["content"] = {media: {"schema": {}}}
    return ok


_GRANT_404 = (
    "Not found, or outside the key's resource grants (the same answer either way, never 403)"
)


def _grant_extension(route: Route) -> dict[str, Any]:
    """Describe a route's resource declarations (``x-resource-grants``) for integrators."""
    spec = route.grants
    out: dict[str, Any] = {}
    if spec is None:
        return out
    params = {n: t for n, t in (*spec.path, *spec.query)}
    if params:
        out["parameters"] = params
    if spec.body:
        out["body_fields"] = dict(spec.body)
    if spec.filters:
        out["filtered_by"] = dict(spec.filters)
    if spec.lookup is not None:
        out["owner_checked"] = True
    return out


def _operation_id(method: str, template: str) -> str:
    # Converters are not part of the name: ``/items/{id:int}`` -> ``..._items_id``.
    plain = _PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", template)
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", plain).rstrip("_")


_WEBHOOK_HEADERS = (
    ("webhook-id", "The delivery id; the same on every retry (deduplicate on it)"),
    ("webhook-timestamp", "Seconds since the epoch when the attempt was signed"),
    ("webhook-signature", "Space-separated `v1,<base64 HMAC-SHA256>` signatures"),
)


def _webhooks(api: RouteRegistry, schemas: _Schemas) -> dict[str, Any]:
    """The event catalogue as OpenAPI 3.1 ``webhooks``: one entry per event type."""
    out: dict[str, Any] = {}
    if api.events is None:
        return out
    for event in api.events.list():
        schema = getattr(event, "schema", None)
        data = schemas.ref(schema, "serialization") if schema is not None else {"type": "object"}
        version = str(getattr(event, "version", "1"))
        envelope = {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "Event id (`evt_...`)"},
                "type": {"const": event.name},
                "version": {
                    "const": version,
                    "description": "Payload version; bumped on a breaking change of data",
                },
                "timestamp": {"type": "string", "format": "date-time"},
                "data": data,
            },
            "required": ["id", "type", "version", "timestamp", "data"],
        }
        out[event.name] = {
            "post": {
                "summary": getattr(event, "description", "") or event.name,
                "description": (
                    "Signed per the Standard Webhooks specification; verify the signature "
                    "before trusting the body."
                ),
                "operationId": "webhook_" + re.sub(r"[^A-Za-z0-9]+", "_", event.name),
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "description": text,
                        "schema": {"type": "string"},
                    }
                    for name, text in _WEBHOOK_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": envelope}},
                },
                "responses": {"2XX": {"description": "Received (any 2xx acknowledges)"}},
                "x-event-version": version,
            }
        }
    return out


def openapi_document(api: RouteRegistry, version: str, routes: list[Route]) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of one version.

    Args:
        api: the registry (title, release, servers, contact, license, events, idempotency).
        version: the version segment.
        routes: that version's compiled routes.
    """
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.include_in_schema:
            continue
        item = paths.setdefault(_PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", route.template), {})
        for method in route.methods:
            item[method.lower()] = _operation(route, method, api, schemas)
    # info.version is the release (a version a generated client package can carry); the path
    # version goes in x-api-version.
    info: dict[str, Any] = {"title": api.title, "version": api.version, "x-api-version": version}
    if api.description:
        info["description"] = api.description
    if api.contact:
        info["contact"] = dict(api.contact)
    if api.license:
        info["license"] = dict(api.license)
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": info}
    if api.servers:
        doc["servers"] = [dict(s) for s in api.servers]
    doc["paths"] = paths
    webhooks = _webhooks(api, schemas)
    if webhooks:
        doc["webhooks"] = webhooks
    doc["components"] = {
        "schemas": schemas.components,
        "securitySchemes": {
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "BearerKey": {"type": "http", "scheme": "bearer", "bearerFormat": "API key"},
        },
    }
    oauth = _oauth2_scheme(api, routes)
    if oauth is not None:
        doc["components"]["securitySchemes"]["OAuth2"] = oauth
    return doc


def _oauth2_scheme(api: RouteRegistry, routes: list[Route]) -> dict[str, Any] | None:
    # Issue 19: with the token endpoint on, a client may trade its key for a token there
    # (client credentials, client_id = key id, secret = key); the interactive reference offers it.
    endpoint = getattr(api, "oauth_endpoint", None)
    if endpoint is None:
        return None
    scopes = sorted({s for r in routes if r.include_in_schema for s in r.scopes})
    return {
        "type": "oauth2",
        "description": "Client credentials: client_id is the API key id, client_secret the key.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": endpoint.token_path,
                "scopes": {s: f"Scope {s}" for s in scopes},
            }
        },
    }


class EventTypeOut(BaseModel):
    """One event type integrators can subscribe to.

    Args:
        type: the event type (``"job.completed"``).
        description: what happened.
        version: the payload version sent in the envelope's ``version``.
        data_schema: JSON Schema of the envelope's ``data`` (None: any JSON object).
    """

    type: str
    description: str = ""
    version: str = "1"
    data_schema: dict[str, Any] | None = None


class EventTypeList(BaseModel):
    """The webhook event catalogue, served at ``<prefix>/<version>/webhooks/event-types``.

    Args:
        data: every event type, sorted by name.
    """

    data: list[EventTypeOut]


def meta_routes(
    api: RouteRegistry, version: str, routes_for: Callable[[str], list[Route]]
) -> list[Route]:
    """Return the public routes that describe one version.

    ``openapi.json``, the interactive reference at ``docs`` (its assets under ``docs/``, not
    listed in the document) and, with an event catalogue, ``webhooks/event-types``.

    Args:
        api: the registry.
        version: the version segment.
        routes_for: the compiled routes of a version (the router's, meta routes included).
    """
    cache: dict[str, bytes] = {}

    def body() -> bytes:
        if "doc" not in cache:
            doc = openapi_document(api, version, routes_for(version))
            cache["doc"] = json.dumps(doc, separators=(",", ":")).encode()
        return cache["doc"]

    async def openapi_json(request: HandlerRequest) -> Response:
        return Response(body(), media_type="application/json")

    async def docs_page(request: HandlerRequest) -> Response:
        return reference_page(f"{api.title} {version}")

    async def docs_asset(request: HandlerRequest) -> Response:
        name = request.path_params.get("name", "")
        if name not in DOCS_ASSETS:
            raise ProblemError(PROBLEMS["not-found"])
        return asset_response(name)

    async def event_types(request: HandlerRequest) -> EventTypeList:
        events = api.events.list() if api.events is not None else []
        return EventTypeList(
            data=[
                EventTypeOut(
                    type=e.name,
                    description=getattr(e, "description", "") or "",
                    version=str(getattr(e, "version", "1")),
                    data_schema=e.json_schema() if hasattr(e, "json_schema") else None,
                )
                for e in events
            ]
        )

    specs: list[tuple[str, Any, str, dict[str, Any]]] = [
        (
            "/openapi.json",
            openapi_json,
            "OpenAPI document",
            {"response_model": dict[str, Any]},
        ),
        ("/docs", docs_page, "API reference", {"response_media_type": "text/html"}),
        ("/docs/{name}", docs_asset, "Reference page asset", {"include_in_schema": False}),
    ]
    if api.events is not None:
        specs.append(
            (
                "/webhooks/event-types",
                event_types,
                "Webhook event types",
                {"response_model": EventTypeList},
            )
        )
    out = []
    for sub, fn, summary, extra in specs:
        route = Route(
            methods=("GET",),
            version=version,
            path=sub,
            template=f"{api.prefix}/{version}{sub}",
            kind="handler",
            handler=fn,
            internal_path=sub,
            public=True,
            rate_class="read",
            summary=summary,
            tags=("meta",),
            **extra,
        )
        route.prepare()
        out.append(route)
    return out
