"""``GraphQLEndpoint``: a GraphQL-over-HTTP target for the route registry (issue 21).

Declared with :meth:`~extapi_kit.routing.api.ExternalAPI.graphql`, it is a
``POST <prefix>/<version>/graphql`` route like any other, so every layer of the stack applies.
What one request goes through, in order (all before any resolver runs):

1. the body: one JSON object (``query``, ``operationName``, ``variables``, ``extensions``), or
   an array of them when batching is on (off by default; on, every operation is counted);
2. persisted queries (:mod:`~extapi_kit.graphql.persisted`): in allowlist mode only registered
   hashes run;
3. parsing, with a token cap;
4. the static analysis (:mod:`~extapi_kit.graphql.cost`): depth, cost, fields, aliases,
   fragment cycles;
5. introspection, allowed only to keys holding ``introspection`` (a scope) by default;
6. the GraphQL validation rules (results cached by query text);
7. the scopes the selected fields and types require (403 ``FORBIDDEN`` when one is missing).

A refusal is a GraphQL response with ``errors`` only (each with ``locations`` and an
``extensions.code``), status 400 (403 for scopes and the allowlist). The rate limiter and the
quota are charged the operation's computed cost: the stack's rate limiter calls
:meth:`~extapi_kit.graphql.GraphQLEndpoint.cost_hook` (``route.extra["cost_hook"]``), which
runs steps 1-7 once and leaves the result for the endpoint. Queries never take
``Idempotency-Key``; mutations do when the stack has an idempotency layer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extapi_kit import telemetry
from extapi_kit._asgi import get_header
from extapi_kit._types import Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings, get_context, has_scope
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.graphql.authz import GraphQLContext, install_guards
from extapi_kit.graphql.cost import Analysis, GraphQLLimits, analyze
from extapi_kit.graphql.persisted import PersistedQueries, query_hash
from extapi_kit.routing.targets import replay_receive
from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    execute,
    parse,
    validate,
)

__all__ = ["GraphQLEndpoint"]

logger = logging.getLogger("extapi_kit.graphql")

_STATE = "_graphql"
_JSON_TYPES = (b"application/json", b"application/graphql-response+json")


@dataclass(slots=True)
class _Op:
    document: DocumentNode
    operation: OperationDefinitionNode
    variables: dict[str, Any] | None
    analysis: Analysis
    register: str | None = None  # a query text to register once it passed every check


@dataclass(slots=True)
class _Plan:
    status: int = 200
    errors: list[dict[str, Any]] = field(default_factory=list)
    ops: list[_Op] = field(default_factory=list)
    batch: bool = False
    disconnected: bool = False

    @property
    def cost(self) -> int:
        return sum(op.analysis.cost for op in self.ops)

    @property
    def mutation(self) -> bool:
        return any(op.analysis.operation == "mutation" for op in self.ops)


class _Refused(Exception):
    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        self.status = status
        self.errors = errors


def _error(message: str, code: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


def _formatted(err: GraphQLError, code: str) -> dict[str, Any]:
    out: dict[str, Any] = dict(err.formatted)
    ext = dict(out.get("extensions") or {})
    ext.setdefault("code", code)
    out["extensions"] = ext
    return out


def _refuse(status: int, message: str, code: str) -> _Refused:
    return _Refused(status, [_error(message, code)])


class GraphQLEndpoint:
    """Serve one GraphQL schema behind the stack (see the module docstring for the order).

    Args:
        schema: a graphql-core schema (built in code or from SDL); fields returning resource
            types and arguments naming resources are wrapped by
            :func:`~extapi_kit.graphql.authz.install_guards`.
        limits: depth, cost and size limits (:class:`GraphQLLimits`).
        persisted: persisted queries (allowlist mode for partners), or None to run any query.
        introspection: True (anyone), False (nobody), or the scope a key needs to introspect.
        batching: accept an array of operations (each counted in full).
        max_batch: most operations in one batch.
        context: ``fn(GraphQLContext) -> None`` filling ``context.state`` for the resolvers.
        max_body: largest request body read (bytes).
        cache_size: parsed and validated documents kept, by query text.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        limits: GraphQLLimits | None = None,
        persisted: PersistedQueries | None = None,
        introspection: bool | str = "graphql:introspect",
        batching: bool = False,
        max_batch: int = 10,
        context: Callable[[GraphQLContext], None] | None = None,
        max_body: int = 64 * 1024,
        cache_size: int = 256,
    ) -> None:
        if not isinstance(schema, GraphQLSchema):
            raise ConfigurationError("schema must be a graphql-core GraphQLSchema")
        errors = [str(e) for e in _schema_errors(schema)]
        if errors:
            raise ConfigurationError(f"invalid GraphQL schema: {'; '.join(errors)}")
        install_guards(schema)
        self.schema = schema
        self.limits = limits or GraphQLLimits()
        self.persisted = persisted
        self.introspection = introspection
        self.batching = batching
        self.max_batch = max_batch
        self.context = context
        self.max_body = max_body
        self._cache: OrderedDict[str, tuple[DocumentNode, list[GraphQLError]]] = OrderedDict()
        self._cache_size = cache_size
        self._refusals = telemetry.counter(
            "extapi.graphql.refusals", "GraphQL requests refused before execution"
        )

    # -- the rate limiter's hook ------------------------------------------------------------

    async def cost_hook(self, scope: Scope, receive: Receive) -> tuple[RouteSettings, Receive]:
        """Read and check the request once; return the route settings charged by its cost.

        Called by the rate limiter (after auth). The body is replayed to the layers inside.
        A refused request costs 1; a mutation turns ``Idempotency-Key`` handling on.

        Args:
            scope: the request scope (its context's ``route`` is replaced).
            receive: the ASGI receive.
        """
        ctx = get_context(scope)
        route = ctx.route
        if route is None:  # only ever called for a matched route
            raise RuntimeError("cost_hook needs a matched route")
        body = await self._read(receive)
        if body is None:
            ctx.extra[_STATE] = _Plan(disconnected=True)
            return route, receive
        plan = self._plan(scope, body, ctx.principal)
        ctx.extra[_STATE] = plan
        cost = max(1, plan.cost) if not plan.errors else 1
        new = dataclasses.replace(
            route,
            cost=cost,
            rate_class=route.rate_class or ("write" if plan.mutation else "read"),
            idempotent=plan.mutation and not plan.errors,
        )
        ctx.route = new
        return new, replay_receive(body, receive)

    # -- the ASGI app -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one GraphQL-over-HTTP request.

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive.
            send: the ASGI send.
        """
        ctx = get_context(scope)
        plan = ctx.extra.get(_STATE)
        if not isinstance(plan, _Plan):
            body = await self._read(receive)
            if body is None:
                return
            plan = self._plan(scope, body, ctx.principal)
            ctx.extra[_STATE] = plan
        if plan.disconnected:
            return
        if plan.errors:
            self._refusals.add(1, {"code": plan.errors[0]["extensions"]["code"]})
            await _send_json(send, plan.status, {"errors": plan.errors})
            return
        gctx = GraphQLContext(ctx.principal, ctx, scope)
        if self.context is not None:
            self.context(gctx)
        answers: list[dict[str, Any]] = []
        status = 200
        for op in plan.ops:
            answer, op_status = await self._execute(op, gctx)
            answers.append(answer)
            status = max(status, op_status)
        if plan.batch:
            await _send_json(send, 200, answers)
        else:
            await _send_json(send, status, answers[0])

    async def _execute(self, op: _Op, gctx: GraphQLContext) -> tuple[dict[str, Any], int]:
        a = op.analysis
        attrs: dict[str, Any] = {
            "graphql.operation.type": a.operation,
            "extapi.graphql.cost": a.cost,
            "extapi.graphql.depth": a.depth,
        }
        if a.name:
            attrs["graphql.operation.name"] = a.name
        with telemetry.span(f"graphql.{a.operation}", attrs):
            result = execute(
                self.schema,
                op.document,
                context_value=gctx,
                variable_values=op.variables,
                operation_name=a.name,
            )
            if not isinstance(result, ExecutionResult):
                result = await result
        out: dict[str, Any] = {}
        status = 200
        # No data and no path: the variables were refused before execution (a request error,
        # GraphQL over HTTP §7.1.2), answered without "data".
        if result.errors and result.data is None and all(e.path is None for e in result.errors):
            status = 400
        else:
            out["data"] = result.data
        if result.errors:
            out["errors"] = [_public_error(e) for e in result.errors]
        return out, status

    # -- preparation --------------------------------------------------------------------------

    async def _read(self, receive: Receive) -> bytes | None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body:
                # Drain nothing more: the answer says why, the client's connection is closed.
                return bytes(body)
            if not message.get("more_body", False):
                return bytes(body)

    def _plan(self, scope: Scope, body: bytes, principal: Principal | None) -> _Plan:
        ctx = get_context(scope)
        try:
            plan = self._plan_body(scope, body, principal)
        except _Refused as exc:
            ctx.rejection = ctx.rejection or "graphql-refused"
            ctx.extra["graphql_error"] = exc.errors[0]["extensions"]["code"]
            return _Plan(status=exc.status, errors=exc.errors)
        for op in plan.ops:
            if op.register is not None and self.persisted is not None:
                self.persisted.register(op.register)
        first = plan.ops[0].analysis
        ctx.extra["graphql_operation"] = first.name
        ctx.extra["graphql_type"] = first.operation
        ctx.extra["graphql_cost"] = plan.cost
        if plan.batch:
            ctx.extra["graphql_batch"] = len(plan.ops)
        return plan

    def _plan_body(self, scope: Scope, body: bytes, principal: Principal | None) -> _Plan:
        ctype = (get_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype not in _JSON_TYPES:
            raise _refuse(415, "Send the request as JSON (application/json).", "BAD_REQUEST")
        if len(body) > self.max_body:
            raise _refuse(413, f"The body exceeds {self.max_body} bytes.", "BAD_REQUEST")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _refuse(400, "The body is not valid JSON.", "BAD_REQUEST") from None
        if isinstance(payload, list):
            if not self.batching:
                raise _refuse(400, "Batched requests are not accepted.", "BATCHING_DISABLED")
            if not payload or len(payload) > self.max_batch:
                raise _refuse(
                    400, f"A batch holds 1 to {self.max_batch} operations.", "BATCH_LIMIT_EXCEEDED"
                )
            ops = [self._prepare(p, principal) for p in payload]
            total = sum(op.analysis.cost for op in ops)
            if total > self.limits.max_cost:
                raise _refuse(
                    400,
                    f"The batch costs {total}; the maximum cost is {self.limits.max_cost}.",
                    "COST_LIMIT_EXCEEDED",
                )
            return _Plan(ops=ops, batch=True)
        return _Plan(ops=[self._prepare(payload, principal)])

    def _query_text(self, payload: dict[str, Any], principal: Principal | None) -> tuple[str, bool]:
        query = payload.get("query")
        if query is not None and not isinstance(query, str):
            raise _refuse(400, "'query' must be a string.", "BAD_REQUEST")
        ext = payload.get("extensions")
        if ext is not None and not isinstance(ext, dict):
            raise _refuse(400, "'extensions' must be an object.", "BAD_REQUEST")
        pq = (ext or {}).get("persistedQuery")
        store = self.persisted
        digest: str | None = None
        if pq is not None:
            if not isinstance(pq, dict) or not isinstance(pq.get("sha256Hash"), str):
                raise _refuse(400, "Invalid persistedQuery extension.", "BAD_REQUEST")
            if store is None:
                if query is None:
                    raise _refuse(
                        400, "Persisted queries are not supported.", "PERSISTED_QUERY_NOT_SUPPORTED"
                    )
            else:
                digest = pq["sha256Hash"].lower()
        if query is None:
            if digest is None or store is None:
                raise _refuse(400, "Send a 'query' (or a persisted query hash).", "BAD_REQUEST")
            text = store.get(digest)
            if text is None:
                raise _refuse(400, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            return text, False
        if store is None:
            return query, False
        actual = query_hash(query)
        if digest is not None and digest != actual:
            raise _refuse(400, "The query does not match its sha256Hash.", "BAD_REQUEST")
        if actual in store:
            return query, False
        if store.mode == "cache":
            return query, digest is not None
        if principal is not None and has_scope(principal.scopes, store.register_scope):
            return query, True
        raise _refuse(
            403, "Only registered (persisted) queries may run.", "PERSISTED_QUERY_NOT_ALLOWED"
        )

    def _document(self, text: str) -> tuple[DocumentNode, list[GraphQLError]]:
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        try:
            document = parse(text, max_tokens=self.limits.max_tokens)
        except GraphQLError as exc:
            raise _Refused(400, [_formatted(exc, "GRAPHQL_PARSE_FAILED")]) from None
        return document, []

    def _validated(self, text: str, document: DocumentNode) -> list[GraphQLError]:
        cached = self._cache.get(text)
        if cached is not None:
            return cached[1]
        errors = validate(self.schema, document, max_errors=20)
        self._cache[text] = (document, errors)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return errors

    def _prepare(self, payload: Any, principal: Principal | None) -> _Op:
        if not isinstance(payload, dict):
            raise _refuse(400, "A GraphQL request is a JSON object.", "BAD_REQUEST")
        text, register = self._query_text(payload, principal)
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            raise _refuse(400, "'operationName' must be a string.", "BAD_REQUEST")
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise _refuse(400, "'variables' must be an object.", "BAD_REQUEST")
        document, _ = self._document(text)
        operation: OperationDefinitionNode | None = None
        fragments: dict[str, FragmentDefinitionNode] = {}
        ops: list[OperationDefinitionNode] = []
        for d in document.definitions:
            if isinstance(d, OperationDefinitionNode):
                ops.append(d)
                if name is not None and d.name is not None and d.name.value == name:
                    operation = d
            elif isinstance(d, FragmentDefinitionNode):
                fragments[d.name.value] = d
        if name is None and len(ops) == 1:
            operation = ops[0]
        if operation is None:
            message = (
                f"Unknown operation named '{name}'."
                if name is not None
                else "Name the operation to run (operationName): the document has several."
                if ops
                else "The document holds no operation."
            )
            raise _refuse(400, message, "OPERATION_RESOLUTION_FAILURE")
        analysis = analyze(self.schema, operation, fragments, variables, self.limits)
        if analysis.errors:
            raise _Refused(
                400, [_formatted(e, "GRAPHQL_VALIDATION_FAILED") for e in analysis.errors]
            )
        if analysis.introspection and not self._may_introspect(principal):
            err = GraphQLError(
                "GraphQL introspection is not allowed for this key.", analysis.introspection
            )
            raise _Refused(400, [_formatted(err, "INTROSPECTION_DISABLED")])
        errors = self._validated(text, document)
        if errors:
            raise _Refused(400, [_formatted(e, "GRAPHQL_VALIDATION_FAILED") for e in errors])
        if analysis.operation == "subscription":
            raise _refuse(400, "Subscriptions are not served over HTTP.", "BAD_REQUEST")
        missing = [
            (scope, where)
            for scope, where in analysis.scopes.items()
            if principal is None or not principal.has_scope(scope)
        ]
        if missing:
            raise _Refused(
                403,
                [
                    _formatted(
                        GraphQLError(
                            f"'{coord}' needs the scope '{scope}'.",
                            node,
                            extensions={"code": "FORBIDDEN"},
                        ),
                        "FORBIDDEN",
                    )
                    for scope, (coord, node) in missing
                ],
            )
        return _Op(document, operation, variables, analysis, text if register else None)

    def _may_introspect(self, principal: Principal | None) -> bool:
        rule = self.introspection
        if isinstance(rule, bool):
            return rule
        return principal is not None and principal.has_scope(rule)


def _schema_errors(schema: GraphQLSchema) -> list[GraphQLError]:
    from graphql import validate_schema

    return list(validate_schema(schema))


def _public_error(err: GraphQLError) -> dict[str, Any]:
    original = err.original_error
    if original is not None and not isinstance(original, GraphQLError):
        # Never a traceback or an internal message in an answer: log it, answer a code.
        logger.error("GraphQL resolver error at %s", err.path, exc_info=original)
        out: dict[str, Any] = {"message": "Internal server error."}
        if err.locations:
            out["locations"] = [loc.formatted for loc in err.locations]
        if err.path is not None:
            out["path"] = err.path
        out["extensions"] = {"code": "INTERNAL_SERVER_ERROR"}
        return out
    return _formatted(err, "BAD_USER_INPUT" if err.path is None else "FIELD_ERROR")


async def _send_json(send: Send, status: int, value: Any) -> None:
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
