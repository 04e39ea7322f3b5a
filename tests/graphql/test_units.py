"""The endpoint's edges in process: no rate limiter in front, cache mode, subscriptions, shapes
of odd requests, the analysis of inline fragments and SDL schemas, the persisted-query store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.graphql import (
    GraphQLContext,
    GraphQLEndpoint,
    GraphQLLimits,
    PersistedQueries,
    analyze,
    annotate,
    install_guards,
    query_hash,
)
from extapi_kit.routing import ExternalAPI
from graphql import GraphQLSchema, build_schema, parse

pytestmark = pytest.mark.anyio

SDL = """
type Query { items(first: Int, kind: String): [Item!]!  item(id: ID!): Item  node: Node
             owned(ids: [ID!]): [Item!] }
type Subscription { ticks: Int }
interface Node { id: ID! }
type Item implements Node { id: ID! owner: ID! tags: [String!]! }
"""
ITEMS = [{"id": "1", "owner": "a", "tags": []}, {"id": "2", "owner": "b", "tags": ["x"]}]


def schema() -> GraphQLSchema:
    s = build_schema(SDL)
    annotate(
        s, {"Item": {"resource": ("owners", "owner")}, "Query.item(id:)": {"resource": "items"}}
    )
    q: Any = s.query_type
    q.fields["items"].resolve = lambda _, info, **kw: ITEMS
    q.fields["item"].resolve = lambda _, info, id: next((i for i in ITEMS if i["id"] == id), None)
    q.fields["owned"].resolve = lambda _, info, **kw: None
    q.fields["node"].resolve = lambda _, info: ITEMS[0]
    s.get_type("Node").resolve_type = lambda obj, info, t: "Item"  # type: ignore[union-attr]
    return s


def app(principal: Principal | None, **options: Any) -> Any:
    api = ExternalAPI()
    endpoint = GraphQLEndpoint(schema(), **options)
    api.graphql(schema=endpoint, explorer=False)
    router = api.build(auth=False, audit_sink=None, rate_limit_storage=None, body_limit=None)

    async def with_principal(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            get_context(scope).principal = principal
        await router(scope, receive, send)

    return with_principal


def client(principal: Principal | None = None, **options: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app(principal, **options))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_without_a_rate_limiter_the_endpoint_checks_everything_itself() -> None:
    """No cost hook ran: the endpoint reads the body, refuses what breaks a limit, runs the
    rest; the context callable fills state; grants filter lists and check arguments."""
    seen: list[GraphQLContext] = []
    who = Principal(key_id="k", grants={"owners": frozenset({"a"}), "items": frozenset({"1"})})
    async with client(who, context=seen.append) as c:
        r = await c.post("/api/v1/graphql", json={"query": "{ items { id } item(id: 2) { id } }"})
        assert r.json()["data"] == {"items": [{"id": "1"}], "item": None}
        r = await c.post("/api/v1/graphql", json={"query": "{ owned { id } node { id } }"})
        assert r.json() == {"data": {"owned": None, "node": {"id": "1"}}}
        deep = "{ items { ... on Item { tags } ... { id } } }"
        assert (await c.post("/api/v1/graphql", json={"query": deep})).status_code == 200
        too_big = {"query": "{ items { id } }", "pad": "x" * 70_000}
        r = await c.post("/api/v1/graphql", json=too_big)
        assert r.status_code == 413
        sub = await c.post("/api/v1/graphql", json={"query": "subscription { ticks }"})
        assert sub.json()["errors"][0]["message"] == "Subscriptions are not served over HTTP."
        for bad in ({"query": "{ items { id } }", "extensions": []},
                    {"query": "{ items { id } }", "operationName": 3},
                    {"extensions": {"persistedQuery": "x"}},
                    {"extensions": {"persistedQuery": {"sha256Hash": "ab"}}}):  # fmt: skip
            r = await c.post("/api/v1/graphql", json=bad)
            assert r.status_code == 400, (bad, r.text)
        assert (await c.post("/api/v1/graphql", json={"query": ""})).status_code == 400
        assert (
            await c.post("/api/v1/graphql", json={"query": "fragment F on Item { id }"})
        ).status_code == 400
    assert seen and seen[0].principal is who


async def test_cache_mode_registers_any_valid_query_and_introspection_switches() -> None:
    """mode="cache": any query runs, a hash sent with it registers it; introspection=False
    refuses every key and True admits every key; the document cache stays bounded."""
    store = PersistedQueries(mode="cache")
    q = "{ items { id } }"
    ext = {"persistedQuery": {"version": 1, "sha256Hash": query_hash(q)}}
    async with client(None, persisted=store, introspection=True, cache_size=1) as c:
        assert (
            await c.post("/api/v1/graphql", json={"query": q, "extensions": ext})
        ).status_code == 200
        assert query_hash(q) in store and len(store) == 1
        assert (await c.post("/api/v1/graphql", json={"extensions": ext})).status_code == 200
        assert (
            await c.post("/api/v1/graphql", json={"query": "{ node { id } }"})
        ).status_code == 200
        intro = await c.post(
            "/api/v1/graphql", json={"query": "{ __schema { queryType { name } } }"}
        )
        assert intro.status_code == 200
    async with client(Principal(key_id="k", scopes=frozenset({"*"})), introspection=False) as c:
        r = await c.post("/api/v1/graphql", json={"query": '{ __type(name: "Item") { name } }'})
        assert r.json()["errors"][0]["extensions"]["code"] == "INTROSPECTION_DISABLED"
    async with client(None) as c:
        r = await c.post("/api/v1/graphql", json={"extensions": ext})
        assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"
        ok = await c.post("/api/v1/graphql", json={"query": q, "extensions": ext})
        assert ok.status_code == 200


def test_analysis_of_unknown_and_nested_selections() -> None:
    """Unknown fields and fragments cost what their shape says and are left to validation;
    variable list sizes and defaults are read; every figure is reported."""
    s = schema()
    doc = parse(
        "query Q($n: Int = 4, $k: String) { items(first: $n, kind: $k) { id ...Missing } "
        "nope { x } items2: items(first: 2) { ... on Item { id } } }"
    )
    op: Any = doc.definitions[0]
    a = analyze(s, op, {}, {}, GraphQLLimits())
    assert (a.cost, a.fields, a.aliases, a.name) == (4 + 1 + 2, 6, 1, "Q")
    b = analyze(s, op, {}, {"n": 7}, GraphQLLimits())
    assert b.cost == 7 + 1 + 2
    c = analyze(s, op, {}, {"n": "seven"}, GraphQLLimits(default_list_size=3))
    assert c.cost == 3 + 1 + 2


def test_guards_are_installed_once_and_annotations_merge() -> None:
    """install_guards() leaves guarded fields alone; annotate() merges extensions."""
    s = schema()
    install_guards(s)
    q: Any = s.query_type
    first = q.fields["item"].resolve
    install_guards(s)
    assert q.fields["item"].resolve is first
    annotate(s, {"Item": {"scopes": ("a",)}})
    assert s.get_type("Item").extensions == {"resource": ("owners", "owner"), "scopes": ("a",)}  # type: ignore[union-attr]


def test_persisted_query_store(tmp_path: Path) -> None:
    """Manifests load as a mapping or a list; the store is capped; odd manifests are refused."""
    q = "{ items { id } }"
    path = tmp_path / "q.json"
    path.write_text(json.dumps({query_hash(q): q}))
    store = PersistedQueries.from_file(path)
    assert store.get(query_hash(q).upper()) == q and 5 not in store
    path.write_text(json.dumps([q]))
    assert len(PersistedQueries.from_file(path, mode="cache")) == 1
    path.write_text("3")
    with pytest.raises(ConfigurationError, match="manifest"):
        PersistedQueries.from_file(path)
    small = PersistedQueries([q], max_entries=1)
    assert small.register(q) == query_hash(q)
    with pytest.raises(ConfigurationError, match="full"):
        small.register("{ node { id } }")
