"""Resource grants inside a GraphQL schema: the REST rules, applied per field.

What a schema declares (``extensions`` of graphql-core types, fields and arguments, or
:func:`annotate` for a schema built from SDL):

- ``{"resource": ("projects", "project_id")}`` on an **object type**: every object of this type
  belongs to the ``projects`` id found in its ``project_id`` (mapping key or attribute).
  Wherever a resolver returns one, a key whose grants exclude that id gets ``null`` and a
  ``NOT_FOUND`` error (the same error a missing object gets, never a "forbidden"), and a list
  keeps only granted items. A job's ``project`` field cannot leak a foreign project (BOLA
  through nested objects), whatever the resolver does.
- ``{"resource": "projects"}`` on an **argument**: the id given is checked before the resolver
  runs; outside the key's grants the field is ``null`` with the same ``NOT_FOUND`` error.
- ``{"scopes": (...)}`` on a field or a type: scopes a key must hold to select it (checked
  before execution by :mod:`~extapi_kit.graphql.cost`).
- ``{"cost": n}`` on a field: its own cost (default 1 for objects, 0 for scalars).

A resolver that finds nothing returns None; for a field of a resource type the guard turns that
into the same ``NOT_FOUND`` error, so a missing and a foreign object answer byte for byte alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extapi_kit._types import Scope
from extapi_kit.context import Principal, RequestContext
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.grants import allowed_ids, grant_predicate, value_in
from graphql import (
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    default_field_resolver,
    get_named_type,
)

__all__ = ["GraphQLContext", "annotate", "install_guards", "not_found"]

NOT_FOUND_MESSAGE = "Not found."
_GUARDED = "_extapi_guarded"


def not_found(info: GraphQLResolveInfo[Any] | None = None) -> GraphQLError:
    """Return the one ``NOT_FOUND`` error of a missing or foreign object.

    Raise it from a resolver; the field becomes ``null`` and the error names its path.

    Args:
        info: unused; accepted so resolvers can pass theirs.
    """
    return GraphQLError(NOT_FOUND_MESSAGE, extensions={"code": "NOT_FOUND"})


@dataclass(slots=True)
class GraphQLContext:
    """``info.context`` of every resolver the endpoint runs.

    Args:
        principal: the verified key's principal (None without auth).
        request: the stack's request context (resource ids are recorded on it for audit).
        scope: the ASGI scope (read-only by convention).
        state: free values the endpoint's ``context=`` callable put there.
    """

    principal: Principal | None
    request: RequestContext
    scope: Scope = field(repr=False)
    state: dict[str, Any] = field(default_factory=dict)

    def allowed_ids(self, kind: str) -> frozenset[str] | None:
        """Return the ids of ``kind`` this key may see, or None when it is unrestricted.

        Args:
            kind: the resource type, e.g. ``"projects"``.
        """
        return allowed_ids(self.principal, kind)

    def record(self, kind: str, value: Any) -> None:
        """Record a resource id the operation touched (the audit record's ``resource_ids``).

        Args:
            kind: the resource type.
            value: the id.
        """
        ids = self.request.resource_ids
        text = str(value)
        old = ids.get(kind)
        if old is None:
            ids[kind] = text
        elif text not in old.split(","):
            ids[kind] = f"{old},{text}"


def annotate(schema: GraphQLSchema, spec: Mapping[str, Mapping[str, Any]]) -> GraphQLSchema:
    """Attach grant, scope and cost declarations to a schema built from SDL.

    Keys are schema coordinates: ``"Project"`` (a type), ``"Query.project"`` (a field),
    ``"Query.project(id:)"`` (an argument); values are merged into their ``extensions``.

    Args:
        schema: the schema (changed in place and returned).
        spec: coordinate -> extensions.
    """
    for coord, ext in spec.items():
        type_name, _, rest = coord.partition(".")
        target: Any = schema.get_type(type_name)
        if target is None:
            raise ConfigurationError(f"annotate(): no type {type_name!r}")
        if rest:
            fname, _, arg = rest.partition("(")
            target = getattr(target, "fields", {}).get(fname)
            if target is None:
                raise ConfigurationError(f"annotate(): no field {coord!r}")
            if arg:
                target = target.args.get(arg.rstrip(":)"))
                if target is None:
                    raise ConfigurationError(f"annotate(): no argument {coord!r}")
        target.extensions = {**(target.extensions or {}), **ext}
    return schema


def _resource_of(ftype: Any) -> tuple[bool, tuple[str, str] | None]:
    inner = ftype.of_type if isinstance(ftype, GraphQLNonNull) else ftype
    is_list = isinstance(inner, GraphQLList)
    named = get_named_type(ftype)
    res = named.extensions.get("resource") if named.extensions else None
    if res is not None and not (isinstance(res, tuple | list) and len(res) == 2):
        raise ConfigurationError(f"{named.name}: resource must be (type, id field): {res!r}")
    return is_list, (str(res[0]), str(res[1])) if res is not None else None


def _guard(fdef: GraphQLField) -> None:
    is_list, res = _resource_of(fdef.type)
    args = tuple(
        (name, str(a.extensions["resource"]))
        for name, a in fdef.args.items()
        if a.extensions and a.extensions.get("resource")
    )
    if res is None and not args:
        return
    inner = fdef.resolve or default_field_resolver

    async def guarded(source: Any, info: GraphQLResolveInfo[Any], **kwargs: Any) -> Any:
        ctx: GraphQLContext = info.context
        for name, kind in args:
            value = kwargs.get(name)
            if value is None:
                continue
            ctx.record(kind, value)
            ids = ctx.allowed_ids(kind)
            if ids is not None and not value_in(value, ids):
                raise not_found()
        result = inner(source, info, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if res is None:
            return result
        kind, key = res
        if is_list:
            if result is None:
                return None
            keep = grant_predicate(ctx.principal, kind, key)
            return list(result) if keep is None else [r for r in result if keep(r)]
        if result is None:
            raise not_found()
        owner = result.get(key) if isinstance(result, Mapping) else getattr(result, key, None)
        if owner is not None:
            ctx.record(kind, owner)  # recorded like REST records a refused id: audit sees it
        ids = ctx.allowed_ids(kind)
        if ids is not None and not value_in(owner, ids):
            raise not_found()
        return result

    guarded.__dict__[_GUARDED] = True
    fdef.resolve = guarded


def install_guards(schema: GraphQLSchema) -> None:
    """Wrap the resolvers of every field that returns a resource type or takes a resource id.

    Idempotent: a field already guarded is left alone.

    Args:
        schema: the schema (its fields' ``resolve`` are replaced).
    """
    for t in schema.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        for fdef in t.fields.values():
            if fdef.resolve is not None and getattr(fdef.resolve, _GUARDED, False):
                continue
            _guard(fdef)
