"""Resource grants: object-level authorization in the registry (OWASP API1, case Z3).

A route declares which path or query parameters (``resource_params``) and which JSON body
fields (``resource_body_fields``) name a resource, e.g. ``{"project_id": "projects"}``. Before
the target runs, every declared value must be granted to the key: ``principal.grants[type]``
holds the granted ids, ``"*"`` means all, and a key with **no entry** for a type is unrestricted
for that type (keys issued before grants existed keep full access). A value outside the grants
gets the same ``not-found`` problem as a missing object, never a 403, so a key cannot learn that
another tenant's object exists.

For lists, ``filter_field={"projects": "project_id"}`` makes the registry drop returned items
whose field is not granted (a second line of defence; the target should filter itself, with
:func:`allowed_ids` / the ``X-Resource-Grants`` header, so pages stay full).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread

from extapi_kit.context import Principal, RequestContext

__all__ = [
    "GrantSpec",
    "ResourceLookup",
    "allowed_ids",
    "check_body",
    "check_lookup",
    "check_request",
    "compile_grants",
    "grant_predicate",
    "is_granted",
]


# fn(path values) -> {resource type: id or ids} owning the addressed object, or None (missing).
ResourceLookup = Callable[
    [Mapping[str, Any]], Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None
]


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """What one route declares about resources (compiled once by :func:`compile_grants`).

    Args:
        path: ``(path parameter, resource type)`` pairs.
        query: ``(query parameter, resource type)`` pairs.
        body: ``(JSON body field, resource type)`` pairs.
        filters: ``(resource type, item field)`` pairs for response filtering.
        lookup: finds the resources owning the addressed object (checked before the target).
    """

    path: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    body: tuple[tuple[str, str], ...] = ()
    filters: tuple[tuple[str, str], ...] = ()
    lookup: ResourceLookup | None = None

    @property
    def checks_request(self) -> bool:
        """Whether the route declares any request parameter, body field or owner lookup."""
        return bool(self.path or self.query or self.body or self.lookup)


def compile_grants(
    path_params: Iterable[str],
    resource_params: Mapping[str, str] | None,
    body_fields: Mapping[str, str] | None,
    filter_field: Mapping[str, str] | None,
    lookup: ResourceLookup | None = None,
) -> GrantSpec | None:
    """Split a route's declarations into path, query, body and filter checks.

    Args:
        path_params: the parameter names of the route's public template.
        resource_params: parameter name -> resource type (path parameters, else query).
        body_fields: top-level JSON body field -> resource type.
        filter_field: resource type -> field of returned items.
        lookup: the route's owner lookup.
    """
    names = set(path_params)
    params = dict(resource_params or {})
    spec = GrantSpec(
        path=tuple((n, t) for n, t in params.items() if n in names),
        query=tuple((n, t) for n, t in params.items() if n not in names),
        body=tuple(dict(body_fields or {}).items()),
        filters=tuple(dict(filter_field or {}).items()),
        lookup=lookup,
    )
    return spec if spec.checks_request or spec.filters else None


def allowed_ids(principal: Principal | None, kind: str) -> frozenset[str] | None:
    """Return the ids of ``kind`` a principal may touch, or None when it is unrestricted.

    None means: no principal (public call), no grant entry for the type, or ``"*"``.

    Args:
        principal: the verified key's principal.
        kind: the resource type, e.g. ``"projects"``.
    """
    if principal is None:
        return None
    ids = principal.grants.get(kind)
    if ids is None or "*" in ids:
        return None
    return ids


def is_granted(principal: Principal | None, kind: str, value: Any) -> bool:
    """Return whether ``value`` (compared as a string) is granted for ``kind``.

    Args:
        principal: the verified key's principal.
        kind: the resource type.
        value: the id (int, str, ...); lists are granted when every element is.
    """
    ids = allowed_ids(principal, kind)
    return ids is None or value_in(value, ids)


def value_in(value: Any, ids: frozenset[str]) -> bool:
    """Return whether an id (lists: every element) is in ``ids``, compared as strings.

    Args:
        value: a JSON-ish id value; None, booleans and objects are never granted.
        ids: the granted ids.
    """
    kind = type(value)
    if kind is str:
        return value in ids
    if kind is int:  # bool is not int here: True never matches "True"
        return str(value) in ids
    if isinstance(value, list | tuple):
        return all(value_in(v, ids) for v in value)
    if value is None or isinstance(value, bool | dict):
        return False
    return str(value) in ids


def _record(ctx: RequestContext, kind: str, value: Any) -> None:
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    old = ctx.resource_ids.get(kind)
    ctx.resource_ids[kind] = text if old is None or old == text else f"{old},{text}"


def check_request(
    spec: GrantSpec,
    ctx: RequestContext,
    params: Mapping[str, str],
    validated: Mapping[str, Any],
    query_string: bytes,
    query: Any,
) -> bool:
    """Check the declared path and query parameters; record them on ``ctx.resource_ids``.

    Both the raw value and the validated one (what a handler sees) must be granted, and every
    occurrence of a repeated query parameter is checked, whichever copy the target uses.

    Args:
        spec: the route's grant declarations.
        ctx: the request context (principal read, resource ids recorded).
        params: raw path parameters from the match.
        validated: path values after ``path_model`` (``params`` itself without one).
        query_string: the raw query string.
        query: the validated ``query_model`` instance, or None.
    """
    p = ctx.principal
    grants = p.grants if p is not None else None
    ok = True
    for name, kind in spec.path:
        value = params.get(name)
        if value is None:
            continue
        _record(ctx, kind, value)
        if grants:
            ids = grants.get(kind)
            if ids is not None and "*" not in ids:
                if value not in ids:
                    ok = False
                v2 = validated.get(name, value)
                if v2 is not value and not value_in(v2, ids):
                    ok = False
    if spec.query and query_string:
        wanted = dict(spec.query)
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            qkind = wanted.get(name)
            if qkind is not None:
                _record(ctx, qkind, value)
                ok = ok and is_granted(p, qkind, value)
        if query is not None:
            for name, kind in spec.query:
                if getattr(query, name, None) is not None:
                    ok = ok and is_granted(p, kind, getattr(query, name))
    return ok


def _restricted(principal: Principal | None) -> bool:
    return principal is not None and any("*" not in ids for ids in principal.grants.values())


async def check_lookup(spec: GrantSpec, ctx: RequestContext, values: Mapping[str, Any]) -> bool:
    """Run the route's owner lookup for a restricted key and check what it names.

    Unrestricted keys skip the lookup (no extra query on their requests). A lookup that returns
    None (no such object) fails the check: the answer is the same 404 the target would give.

    Args:
        spec: the route's grant declarations (``spec.lookup`` set).
        ctx: the request context (principal read, resource ids recorded).
        values: the path values (validated by ``path_model`` when the route has one).
    """
    fn = spec.lookup
    if fn is None or not _restricted(ctx.principal):
        return True
    if inspect.iscoroutinefunction(fn):
        owners = await fn(values)
    else:
        owners = await anyio.to_thread.run_sync(fn, values)
        if inspect.isawaitable(owners):
            owners = await owners
    if owners is None:
        return False
    ok = True
    for kind, value in owners.items():
        _record(ctx, kind, value)
        ok = ok and is_granted(ctx.principal, kind, value)
    return ok


def check_body(spec: GrantSpec, ctx: RequestContext, adapter: Any, body: Any) -> bool:
    """Check the declared JSON body fields of a validated body; record them.

    Both the field names and their aliases are looked at (what a handler and what a forwarded
    internal app see).

    Args:
        spec: the route's grant declarations.
        ctx: the request context.
        adapter: the route's request ``TypeAdapter``.
        body: the validated body value.
    """
    # Defaults included: a handler sees a defaulted field even though it was not sent.
    views = [adapter.dump_python(body, mode="json", by_alias=a) for a in (False, True)]
    ok = True
    for name, kind in spec.body:
        for view in views:
            if isinstance(view, Mapping) and view.get(name) is not None:
                _record(ctx, kind, view[name])
                ok = ok and is_granted(ctx.principal, kind, view[name])
    return ok


def grant_predicate(
    principal: Principal | None, kind: str, field: str
) -> Callable[[Any], bool] | None:
    """Return a predicate keeping items whose ``field`` is granted, or None if unrestricted.

    Pass it as ``paginate(..., where=...)`` so filtering happens before paging.

    Args:
        principal: the verified key's principal.
        kind: the resource type.
        field: the item field (mapping key or attribute) holding the resource id.
    """
    ids = allowed_ids(principal, kind)
    if ids is None:
        return None

    def keep(item: Any) -> bool:
        value = item.get(field) if isinstance(item, Mapping) else getattr(item, field, None)
        return value_in(value, ids)

    return keep
