"""The endpoint's options on a stack of its own under uvicorn: persisted-query allowlist,
batching counted in full, quotas charged by cost, resource guards with a naive resolver, masked
resolver errors, and what audit and telemetry record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from extapi_kit.audit import MemorySink
from extapi_kit.examples.studio.graphql_api import build_studio_schema
from extapi_kit.examples.studio.internal import create_internal_app
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.graphql import (
    GraphQLEndpoint,
    GraphQLLimits,
    PersistedQueries,
    annotate,
    query_hash,
)
from extapi_kit.keys.service import KeyService
from extapi_kit.routing import ExternalAPI
from graphql import GraphQLSchema, build_schema
from tests.graphql.conftest import serve
from tests.graphql.test_attacks import _remaining

MINE = "query Mine { project(id: 7) { name } }"
NAIVE_SDL = """
type Query { job(id: ID!): Job  boom: String  secret: String }
type Job { id: ID! project: Project }
type Project { id: ID! name: String! }
"""
_JOBS = {"1": {"id": "1", "project_id": "5"}, "2": {"id": "2", "project_id": "404"},
         "3": {"id": "3", "project_id": "7"}}  # fmt: skip
_PROJECTS = {"5": {"id": "5", "name": "theirs"}, "7": {"id": "7", "name": "ours"}}


def naive_schema() -> GraphQLSchema:
    """Resolvers that check nothing: only the Project type's declared grant protects it."""
    schema = build_schema(NAIVE_SDL)
    annotate(
        schema,
        {
            "Project": {"resource": ("projects", "id")},
            "Query.secret": {"scopes": ("secrets:read",)},
            "Query.job": {"cost": 2},
        },
    )
    fields = schema.query_type.fields  # type: ignore[union-attr]
    fields["job"].resolve = lambda _, info, id: _JOBS.get(id)
    fields["boom"].resolve = _boom
    schema.get_type("Job").fields["project"].resolve = (  # type: ignore[union-attr]
        lambda job, info: _PROJECTS.get(job["project_id"])
    )
    return schema


def _boom(_: Any, info: Any) -> str:
    raise RuntimeError("db password hunter2 at /srv/app.py line 3")


@dataclass
class Stack:
    base: str
    keys: dict[str, str]
    audit: MemorySink
    persisted: PersistedQueries


async def _make_keys(url: str) -> dict[str, str]:
    svc = KeyService(url)
    try:
        _, partner = await svc.create(
            "p7", owner="p7", scopes=["projects:read"], grants={"projects": ["7"]}
        )
        _, operator = await svc.create(
            "ops", owner="ops", scopes=["projects:read", "graphql:register"]
        )
        _, quota = await svc.create("q", owner="q", scopes=["projects:read"], quota={"daily": 150})
    finally:
        await svc.aclose()
    return {"partner": partner, "operator": operator, "quota": quota}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    internal = create_internal_app(str(tmp_path / "studio.db"))
    schema = build_studio_schema(internal.state.db, internal)
    persisted = PersistedQueries([MINE])
    api = ExternalAPI(title="GraphQL options")
    api.graphql("/graphql", schema=schema, persisted=persisted)
    api.graphql(
        "/batch", schema=build_studio_schema(internal.state.db, internal), batching=True,
        max_batch=3, explorer=False,
    )  # fmt: skip
    api.graphql("/naive", schema=naive_schema(), explorer=False)
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    keys = asyncio.run(_make_keys(url))
    audit = MemorySink()
    built = api.build(
        key_store=KeyService(url),
        audit_sink=audit,
        rate_limit_storage="memory://",
        read="1000/minute",
        options={"rate_limit": {"strategy": "moving-window"}},
        usage=f"sqlite:///{tmp_path / 'usage.db'}",
    )
    with serve(built) as base:
        yield Stack(base, keys, audit, persisted)


def _post(c: httpx.Client, key: str, path: str, body: Any) -> httpx.Response:
    return c.post(f"/api/v1{path}", json=body, headers={"X-API-Key": key})


def _code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["extensions"]["code"]
    return code


def test_allowlist_runs_only_registered_queries(stack: Stack) -> None:
    """Q11: in allowlist mode a partner runs a registered query (by text or by hash) and
    nothing else: an unregistered text, or an APQ registration attempt, is 403
    PERSISTED_QUERY_NOT_ALLOWED; an unknown hash is PERSISTED_QUERY_NOT_FOUND; a hash that
    does not match its text is refused; a key with graphql:register registers (APQ) a valid
    query, which partners may then run by hash; an invalid one is never registered."""
    p, o = stack.keys["partner"], stack.keys["operator"]
    digest = query_hash(MINE)
    ext = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    with httpx.Client(base_url=stack.base, trust_env=False) as c:
        assert _post(c, p, "/graphql", {"query": MINE}).json() == {
            "data": {"project": {"name": "Project 07"}}
        }
        assert _post(c, p, "/graphql", {"extensions": ext}).json()["data"] == {
            "project": {"name": "Project 07"}
        }
        other = "{ projects { id } }"
        r = _post(c, p, "/graphql", {"query": other})
        assert r.status_code == 403 and _code(r) == "PERSISTED_QUERY_NOT_ALLOWED"
        apq = {"persistedQuery": {"version": 1, "sha256Hash": query_hash(other)}}
        r = _post(c, p, "/graphql", {"query": other, "extensions": apq})
        assert r.status_code == 403 and _code(r) == "PERSISTED_QUERY_NOT_ALLOWED"
        r = _post(c, p, "/graphql", {"extensions": apq})
        assert r.status_code == 400 and _code(r) == "PERSISTED_QUERY_NOT_FOUND"
        r = _post(c, p, "/graphql", {"query": other, "extensions": ext})
        assert r.status_code == 400 and _code(r) == "BAD_REQUEST"
        # The operator registers it (APQ: hash and text together), then the partner runs it.
        bad = "{ projects { nope } }"
        r = _post(c, o, "/graphql", {"query": bad})
        assert _code(r) == "GRAPHQL_VALIDATION_FAILED" and query_hash(bad) not in stack.persisted
        r = _post(c, o, "/graphql", {"query": other, "extensions": apq})
        assert r.status_code == 200 and query_hash(other) in stack.persisted
        r = _post(c, p, "/graphql", {"extensions": apq})
        assert r.json() == {"data": {"projects": [{"id": "7"}]}}


def test_batches_when_enabled_are_counted_in_full(stack: Stack) -> None:
    """Q7: with batching on, each operation of a batch is charged (the RateLimit headers drop
    by the sum), a batch over max_batch or whose total cost passes max_cost is refused."""
    p = stack.keys["partner"]
    one = {"query": "{ projects { id } }"}
    with httpx.Client(base_url=stack.base, trust_env=False) as c:
        r0 = _post(c, p, "/batch", [one])
        r1 = _post(c, p, "/batch", [one, one])
        assert r1.status_code == 200
        assert r1.json() == [{"data": {"projects": [{"id": "7"}]}}] * 2
        assert _remaining(r0) - _remaining(r1) == 20
        r = _post(c, p, "/batch", [one] * 4)
        assert r.status_code == 400 and _code(r) == "BATCH_LIMIT_EXCEEDED"
        big = {"query": "{ projects(first: 100) { id assets(first: 3) { id } } }"}
        r = _post(c, p, "/batch", [big, big, big])
        assert r.status_code == 400 and _code(r) == "COST_LIMIT_EXCEEDED"
        assert _code(_post(c, p, "/batch", [])) == "BATCH_LIMIT_EXCEEDED"
        assert _code(_post(c, p, "/batch", [5])) == "BAD_REQUEST"


def test_quota_is_charged_the_computed_cost(stack: Stack) -> None:
    """Q6: a key with a daily quota of 150 pays 100 for a query of 100 projects; the next such
    query does not fit and is refused (429), while a query costing 1 still does."""
    q = stack.keys["quota"]
    with httpx.Client(base_url=stack.base, trust_env=False) as c:
        hundred = {"query": "{ projects(first: 100) { id } }"}
        assert _post(c, q, "/batch", hundred).status_code == 200
        refused = _post(c, q, "/batch", hundred)
        assert refused.status_code == 429, refused.text
        assert _post(c, q, "/batch", {"query": "{ project(id: 1) { id } }"}).status_code == 200


def test_guards_hold_with_resolvers_that_check_nothing(stack: Stack) -> None:
    """Q9: a job's project field resolved without any check still never hands a project-7 key
    project 5: the answer is byte for byte the one of a job whose project does not exist; a
    key's own project comes through; field scopes declared with annotate() apply."""
    p = stack.keys["partner"]
    q = "{ job(id: %s) { project { name } } }"
    with httpx.Client(base_url=stack.base, trust_env=False) as c:
        foreign = _post(c, p, "/naive", {"query": q % 1})
        missing = _post(c, p, "/naive", {"query": q % 2})
        assert foreign.status_code == missing.status_code == 200
        assert foreign.content == missing.content
        assert foreign.json()["data"] == {"job": {"project": None}}
        assert foreign.json()["errors"][0]["path"] == ["job", "project"]
        assert _post(c, p, "/naive", {"query": q % 3}).json() == {
            "data": {"job": {"project": {"name": "ours"}}}
        }
        unrestricted = _post(c, stack.keys["operator"], "/naive", {"query": q % 1})
        assert unrestricted.json() == {"data": {"job": {"project": {"name": "theirs"}}}}
        r = _post(c, p, "/naive", {"query": "{ secret }"})
        assert r.status_code == 403 and _code(r) == "FORBIDDEN"


def test_resolver_errors_are_masked(stack: Stack) -> None:
    """Q12: an exception inside a resolver answers "Internal server error." with
    INTERNAL_SERVER_ERROR, its path and location, and none of the exception's text."""
    with httpx.Client(base_url=stack.base, trust_env=False) as c:
        r = _post(c, stack.keys["partner"], "/naive", {"query": "{ boom }"})
    assert r.status_code == 200
    assert r.json() == {
        "data": {"boom": None},
        "errors": [
            {
                "message": "Internal server error.",
                "locations": [{"line": 1, "column": 3}],
                "path": ["boom"],
                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            }
        ],
    }
    assert "hunter2" not in r.text and "app.py" not in r.text


def test_audit_and_spans_record_the_operation(stack: Stack) -> None:
    """Audit records carry the operation's name, type and cost and the resource ids it
    touched (also a refused one); each executed operation has its span with the same."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    p = stack.keys["partner"]
    with httpx.Client(base_url=stack.base, trust_env=False) as c:
        _post(c, p, "/naive", {"query": "query Peek { job(id: 1) { project { name } } }"})
        _post(c, p, "/graphql", {"query": "{ projects { id } }"})
    records = _wait_records(stack.audit, 2)
    peek = next(r for r in records if r.extra.get("graphql_operation") == "Peek")
    assert peek.extra["graphql_type"] == "query"
    assert peek.extra["graphql_cost"] == 3  # job (2) + project (1)
    assert peek.resource_ids == {"projects": "5"}
    refused = next(r for r in records if r.extra.get("graphql_error"))
    assert refused.extra["graphql_error"] == "PERSISTED_QUERY_NOT_ALLOWED"
    assert refused.status == 403
    spans = [s for s in exporter.get_finished_spans() if s.name == "graphql.query"]
    assert spans and spans[0].attributes is not None
    assert spans[0].attributes["graphql.operation.name"] == "Peek"
    assert spans[0].attributes["extapi.graphql.cost"] == 3


def _wait_records(sink: MemorySink, n: int) -> list[Any]:
    import time

    for _ in range(750):  # up to 15 s on a loaded box; the writer flushes every 0.2 s
        records = sink.records
        if len(records) >= n:
            return records
        time.sleep(0.02)
    raise AssertionError(f"{len(sink.records)} audit records")


def test_configuration_errors_are_named() -> None:
    """Bad limits, schemas, persisted manifests and annotations fail at start-up, naming
    the setting."""
    with pytest.raises(ConfigurationError, match="max_depth"):
        GraphQLLimits(max_depth=0)
    with pytest.raises(ConfigurationError, match="default_list_size"):
        GraphQLLimits(default_list_size=-1)
    with pytest.raises(ConfigurationError, match="GraphQLSchema"):
        GraphQLEndpoint("type Query { a: Int }")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="invalid GraphQL schema"):
        GraphQLEndpoint(GraphQLSchema())
    with pytest.raises(ConfigurationError, match="does not match"):
        PersistedQueries({"0" * 64: "{ a }"})
    with pytest.raises(ConfigurationError, match="mode"):
        PersistedQueries(mode="open")
    schema = build_schema(NAIVE_SDL)
    for coord in ("Nope", "Query.nope", "Query.job(nope:)"):
        with pytest.raises(ConfigurationError, match="annotate"):
            annotate(schema, {coord: {"cost": 1}})
    annotate(schema, {"Job": {"resource": "projects"}})
    with pytest.raises(ConfigurationError, match="resource must be"):
        GraphQLEndpoint(schema)
