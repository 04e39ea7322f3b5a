"""Static analysis of one GraphQL operation before it runs: cost, depth, size and scopes.

One linear walk over the selected operation, fragments expanded (each fragment analysed once and
its figures reused, so a fragment spread a thousand times costs one visit, and a chain of
fragments that double each other cannot blow the walk up). What it measures:

- **cost**: every field costs its ``extensions["cost"]``, else 1 for an object (or interface,
  union) and 0 for a scalar; a list field multiplies its own cost and its selection's by its
  ``first``/``last``/``limit`` argument (literal, variable or variable default), or by
  :attr:`GraphQLLimits.default_list_size` without one. Aliases and fragments are counted as
  many times as they appear, so they cannot multiply work past the limit for free.
- **depth**, expanded **fields** and **aliases**, checked against their limits;
- whether the operation **introspects** (``__schema``/``__type``);
- the **scopes** its fields and types require (``extensions["scopes"]``).

A fragment that spreads itself (directly or through others) is refused here, before the
validation rules run. See docs/graphql.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

from extapi_kit.exceptions import ConfigurationError
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_composite_type,
)

__all__ = ["Analysis", "GraphQLLimits", "analyze"]


@dataclass(frozen=True, slots=True)
class GraphQLLimits:
    """What one GraphQL request may ask for (checked before anything runs).

    Args:
        max_depth: deepest field nesting (the root fields are depth 1).
        max_cost: highest computed cost of one operation (see the module docstring).
        max_fields: field selections after fragments are expanded (field duplication).
        max_aliases: aliased fields after expansion (alias batching).
        max_tokens: lexical tokens the parser reads before it gives up.
        max_list_size: highest ``first``/``last``/``limit`` a list field accepts.
        default_list_size: the multiplier of a list field given no size argument.
        list_args: the argument names that size a list.
    """

    max_depth: int = 10
    max_cost: int = 1000
    max_fields: int = 300
    max_aliases: int = 30
    max_tokens: int = 2000
    max_list_size: int = 100
    default_list_size: int = 10
    list_args: tuple[str, ...] = ("first", "last", "limit")

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_cost", "max_fields", "max_tokens", "max_list_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"GraphQLLimits.{name} must be an int >= 1: {value!r}")
        for name in ("max_aliases", "default_list_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"GraphQLLimits.{name} must be an int >= 0: {value!r}")


@dataclass(slots=True)
class Analysis:
    """What :func:`analyze` found (the figures are those of the expanded operation).

    Args:
        operation: ``"query"``, ``"mutation"`` or ``"subscription"``.
        name: the operation name, or None.
        cost: the computed cost.
        depth: the deepest nesting.
        fields: field selections after expansion.
        aliases: aliased selections after expansion.
        introspection: the first ``__schema`` or ``__type`` selection, or None.
        scopes: required scope -> (schema coordinate, node) of its first use.
        errors: the limits the operation breaks (empty: it may run).
    """

    operation: str
    name: str | None
    cost: int = 0
    depth: int = 0
    fields: int = 0
    aliases: int = 0
    introspection: Node | None = None
    scopes: dict[str, tuple[str, Node]] = field(default_factory=dict)
    errors: list[GraphQLError] = field(default_factory=list)


# (cost, depth, fields, aliases, deepest node)
_Figures = tuple[int, int, int, int, Node | None]
_ZERO: _Figures = (0, 0, 0, 0, None)


class _Walk:
    __slots__ = (
        "analysis",
        "done",
        "fragments",
        "limits",
        "open",
        "schema",
        "var_defaults",
        "vars",
    )

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: GraphQLLimits,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        var_defaults: dict[str, Any],
        analysis: Analysis,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.fragments = fragments
        self.vars = variables
        self.var_defaults = var_defaults
        self.analysis = analysis
        self.done: dict[tuple[str, bool], _Figures] = {}
        self.open: set[str] = set()

    def fail(self, message: str, node: Node | None, code: str) -> None:
        self.analysis.errors.append(GraphQLError(message, node, extensions={"code": code}))

    def list_size(self, node: FieldNode) -> int:
        limits = self.limits
        for arg in node.arguments or ():
            if arg.name.value not in limits.list_args:
                continue
            value = arg.value
            size: Any = None
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                name = value.name.value
                size = self.vars.get(name, self.var_defaults.get(name))
            if isinstance(size, int) and not isinstance(size, bool):
                if size > limits.max_list_size:
                    self.fail(
                        f"'{arg.name.value}' may be at most {limits.max_list_size}.",
                        arg,
                        "LIST_LIMIT_EXCEEDED",
                    )
                return max(size, 0)
            return limits.default_list_size
        return limits.default_list_size

    def selections(self, parent: Any, node: SelectionSetNode, intro: bool = False) -> _Figures:
        cost = depth = count = aliases = 0
        deep: Node | None = None
        fields = getattr(parent, "fields", None)
        for sel in node.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                count += 1
                if sel.alias is not None:
                    aliases += 1
                if name == "__typename":
                    if depth < 1:
                        depth, deep = 1, sel
                    continue
                fdef: GraphQLField | None
                inner = intro
                if name == "__schema":
                    inner = True
                    fdef = SchemaMetaFieldDef
                    self.analysis.introspection = self.analysis.introspection or sel
                elif name == "__type":
                    inner = True
                    fdef = TypeMetaFieldDef
                    self.analysis.introspection = self.analysis.introspection or sel
                else:
                    fdef = fields.get(name) if fields is not None else None
                ftype: Any = fdef.type if fdef is not None else None
                named = get_named_type(ftype) if ftype is not None else None
                if fdef is not None:
                    ext = fdef.extensions
                    if ext:
                        for s in ext.get("scopes", ()):
                            self.analysis.scopes.setdefault(s, (f"{parent.name}.{name}", sel))
                    text = named.extensions if named is not None else None
                    if text:
                        for s in text.get("scopes", ()):
                            self.analysis.scopes.setdefault(s, (named.name, sel))  # type: ignore[union-attr]
                    own = ext.get("cost") if ext else None
                    if own is None:
                        own = 1 if is_composite_type(named) else 0
                else:
                    own = 1 if sel.selection_set is not None else 0
                if sel.selection_set is not None:
                    c, d, n, a, dn = self.selections(named, sel.selection_set, inner)
                else:
                    c, d, n, a, dn = _ZERO
                if inner:
                    # Introspection reads the schema in memory: no cost, and the type-wrapper
                    # chain (ofType { ofType { ... } }) of the standard query adds no depth.
                    # Other nesting still counts, so __Type.fields.type.fields... is bounded.
                    if name == "ofType":
                        d -= 1
                elif ftype is not None and _is_list(ftype):
                    c = self.list_size(sel) * (own + c)
                else:
                    c += own
                cost += c
                count += n
                aliases += a
                if d + 1 > depth:
                    depth, deep = d + 1, dn or sel
            elif isinstance(sel, InlineFragmentNode):
                target = parent
                if sel.type_condition is not None:
                    target = self.schema.get_type(sel.type_condition.name.value)
                c, d, n, a, dn = self.selections(target, sel.selection_set, intro)
                cost += c
                count += n
                aliases += a
                if d > depth:
                    depth, deep = d, dn
            elif isinstance(sel, FragmentSpreadNode):
                c, d, n, a, dn = self.spread(sel, intro)
                cost += c
                count += n
                aliases += a
                if d > depth:
                    depth, deep = d, dn
        return cost, depth, count, aliases, deep

    def spread(self, node: FragmentSpreadNode, intro: bool) -> _Figures:
        name = node.name.value
        figures = self.done.get((name, intro))
        if figures is not None:
            return figures
        frag = self.fragments.get(name)
        if frag is None:
            return _ZERO  # an unknown fragment: the validation rules name it
        if name in self.open:
            self.fail(
                f"Cannot spread fragment '{name}' within itself.", node, "GRAPHQL_VALIDATION_FAILED"
            )
            return _ZERO
        self.open.add(name)
        figures = self.selections(
            self.schema.get_type(frag.type_condition.name.value), frag.selection_set, intro
        )
        self.open.discard(name)
        self.done[name, intro] = figures
        return figures


def _is_list(ftype: Any) -> bool:
    if isinstance(ftype, GraphQLNonNull):
        ftype = ftype.of_type
    return isinstance(ftype, GraphQLList)


def _var_defaults(op: OperationDefinitionNode) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in op.variable_definitions or ():
        if isinstance(d.default_value, IntValueNode):
            out[d.variable.name.value] = int(d.default_value.value)
    return out


def analyze(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any] | None,
    limits: GraphQLLimits,
) -> Analysis:
    """Measure one operation and list the limits it breaks.

    Args:
        schema: the schema the operation runs against.
        operation: the selected operation.
        fragments: the document's fragment definitions by name.
        variables: the request's variable values (sizes given by variables are read here).
        limits: the limits to check.
    """
    analysis = Analysis(
        operation=operation.operation.value,
        name=operation.name.value if operation.name is not None else None,
    )
    root = schema.get_root_type(operation.operation)
    walk = _Walk(schema, limits, fragments, variables or {}, _var_defaults(operation), analysis)
    cost, depth, count, aliases, deep = walk.selections(root, operation.selection_set)
    analysis.cost, analysis.depth, analysis.fields, analysis.aliases = cost, depth, count, aliases
    if depth > limits.max_depth:
        walk.fail(
            f"Query depth {depth} exceeds the maximum depth of {limits.max_depth}.",
            deep,
            "DEPTH_LIMIT_EXCEEDED",
        )
    if count > limits.max_fields:
        walk.fail(
            f"The operation selects {count} fields; the maximum is {limits.max_fields}.",
            operation,
            "FIELD_LIMIT_EXCEEDED",
        )
    if aliases > limits.max_aliases:
        walk.fail(
            f"The operation uses {aliases} aliases; the maximum is {limits.max_aliases}.",
            operation,
            "ALIAS_LIMIT_EXCEEDED",
        )
    if cost > limits.max_cost:
        walk.fail(
            f"The operation costs {cost}; the maximum cost is {limits.max_cost}.",
            operation,
            "COST_LIMIT_EXCEEDED",
        )
    return analysis
