"""OpenAPI 3.1 for exactly the exposed surface of one version, and a plain HTML docs page.

The document is generated from the same compiled route list the router matches against, so the
set of ``(method, path)`` it lists is the set that is reachable (case Z4); ``HEAD`` is implied
wherever ``GET`` is listed.
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter
from starlette.responses import HTMLResponse, Response

from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.routes import Route

if TYPE_CHECKING:
    from extapi_kit.routing.api import ExternalAPI

__all__ = ["meta_routes", "openapi_document"]

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
            name = tp.__name__
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
    route: Route, method: str, api: ExternalAPI, schemas: _Schemas
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


def _operation(route: Route, method: str, api: ExternalAPI, schemas: _Schemas) -> dict[str, Any]:
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
    ok: dict[str, Any] = {"description": "Success", "headers": dict(_RATE_HEADERS)}
    if route.response_model is not None:
        ok["content"] = {
            "application/json": {"schema": schemas.ref(route.response_model, "serialization")}
        }
    op["responses"][str(route.status_code)] = ok
    codes = ["404", "413", "429"]
    if not route.public:
        codes[:0] = ["401", "403"]
    if route.query_model or route.path_model or route.request_model:
        codes += ["400", "415", "422"]
    if route.kind == "upstream":
        codes += ["502", "503", "504"]
    for code in sorted(set(codes)):
        headers = dict(_RATE_HEADERS) if code == "429" else None
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
    return op


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
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", template).rstrip("_")


def openapi_document(api: ExternalAPI, version: str, routes: list[Route]) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of one version.

    Args:
        api: the registry (title, release, idempotency setting).
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
    info: dict[str, Any] = {"title": api.title, "version": f"{api.version} ({version})"}
    if api.description:
        info["description"] = api.description
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerKey": {"type": "http", "scheme": "bearer", "bearerFormat": "API key"},
            },
        },
    }


def _docs_html(api: ExternalAPI, version: str, doc: dict[str, Any]) -> str:
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            scopes = ", ".join(op.get("x-required-scopes", ())) or (
                "public" if op.get("security") == [] else "-"
            )
            flag = " (deprecated)" if op.get("deprecated") else ""
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}{flag}</td>"
                f"<td>{html.escape(scopes)}</td></tr>"
            )
    title = html.escape(f"{api.title} {version}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>Machine-readable: <a href='openapi.json'>openapi.json</a>. "
        "Authenticate with <code>X-API-Key</code> or <code>Authorization: Bearer</code>.</p>"
        "<table border='1' cellpadding='4'><tr><th>Method</th><th>Path</th><th>Summary</th>"
        f"<th>Scopes</th></tr>{''.join(rows)}</table></body></html>"
    )


def meta_routes(api: ExternalAPI, version: str) -> list[Route]:
    """Return the public ``openapi.json`` and ``docs`` routes of one version.

    Args:
        api: the registry.
        version: the version segment.
    """
    cache: dict[str, bytes] = {}

    def body() -> bytes:
        if "doc" not in cache:
            cache["doc"] = json.dumps(api.openapi(version), separators=(",", ":")).encode()
        return cache["doc"]

    async def openapi_json(request: HandlerRequest) -> Response:
        return Response(body(), media_type="application/json")

    async def docs_page(request: HandlerRequest) -> Response:
        return HTMLResponse(_docs_html(api, version, json.loads(body())))

    out = []
    for sub, fn, summary in (
        ("/openapi.json", openapi_json, "OpenAPI document"),
        ("/docs", docs_page, "API documentation"),
    ):
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
        )
        route.prepare()
        out.append(route)
    return out
