"""GraphQL behind the stack (issue 21): the same data through GraphQL and REST, and the analysis.

- ``REST GET /projects/{id}`` vs ``GraphQL { project(id:) { ... } }``: both through the full
  :func:`build` stack (api key with a cached key, rate limit, memory stores), in process; the
  handler and the resolver read the same row of the studio's SQLite database (in memory).
- ``cost analysis, 50-field query``: :func:`extapi_kit.graphql.analyze` on a parsed 50-field
  operation (5 aliased projects with nested assets) — target <= 100 µs.
- ``parse + validate, 50-field query``: what the endpoint's document cache saves on a repeat.

Medians over interleaved batches (min beside them, the box may be shared).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from extapi_kit._types import ASGIApp, Message, Scope

BATCHES = 30
PER_BATCH = 200

FIELDS_50 = (
    "query Fifty { "
    + " ".join(
        f"p{i}: project(id: {i + 1}) {{ id name status orgId createdAt "
        "assets(first: 3) { id name kind } }"
        for i in range(5)
    )
    + " }"
)
SMALL = "{ project(id: 7) { id orgId name status createdAt } }"


def _scope(method: str, path: str, key: str, body: bytes) -> Callable[[], Scope]:
    headers = [(b"x-api-key", key.encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    def make() -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": list(headers),
            "client": ("203.0.113.7", 1234),
            "server": ("t", 80),
        }

    return make


def _receiver(body: bytes) -> Callable[[], Any]:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _medians(cases: list[tuple[ASGIApp, Callable[[], Scope], bytes]]) -> list[float]:
    status: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    for app, make, body in cases:
        for _ in range(100):
            await app(make(), _receiver(body), send)
        if status[-1] != 200:
            raise RuntimeError(f"benchmarked app answered {status[-1]}")
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(BATCHES):
        for i, (app, make, body) in enumerate(cases):
            await asyncio.sleep(0.002)
            start = time.perf_counter_ns()
            for _ in range(PER_BATCH):
                await app(make(), _receiver(body), send)
            samples[i].append((time.perf_counter_ns() - start) / PER_BATCH / 1000)
    return [statistics.median(s) for s in samples]


def _per_call_us(fn: Callable[[], object], n: int = 2000) -> tuple[float, float]:
    for _ in range(200):
        fn()
    runs = []
    for _ in range(15):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter_ns() - start) / n / 1000)
    return statistics.median(runs), min(runs)


async def _run() -> list[dict[str, Any]]:
    from argon2 import profiles

    from extapi_kit.examples.studio.graphql_api import build_studio_schema
    from extapi_kit.examples.studio.internal import StudioDB
    from extapi_kit.graphql import GraphQLLimits, analyze
    from extapi_kit.keys.hashing import Argon2Hasher
    from extapi_kit.keys.service import KeyService
    from extapi_kit.routing import ExternalAPI, HandlerRequest
    from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse, validate

    db = StudioDB(":memory:")
    keys = KeyService("memory://", hasher=Argon2Hasher(profiles.CHEAPEST))
    _, key = await keys.create("bench", scopes=["projects:read"])
    api = ExternalAPI()

    def project(req: HandlerRequest) -> Any:
        rows = db.query("SELECT * FROM projects WHERE id = ?", (int(req.path_params["id"]),))
        row = rows[0]
        return {k: row[k] for k in ("id", "org_id", "name", "status", "created_at")}

    async def project_async(req: HandlerRequest) -> Any:
        return project(req)

    api.expose("GET", "/projects/{id:int}", handler=project_async, scopes=["projects:read"])
    schema = build_studio_schema(db, None)
    api.graphql(schema=schema, explorer=False)
    stack = api.build(
        key_store=keys,
        audit_sink=None,
        rate_limit_storage="memory://",
        read="100000000/minute",
        write="100000000/minute",
    )
    gql_body = json.dumps({"query": SMALL}).encode()
    rest, gql = await _medians(
        [
            (stack, _scope("GET", "/api/v1/projects/7", key, b""), b""),
            (stack, _scope("POST", "/api/v1/graphql", key, gql_body), gql_body),
        ]
    )
    doc = parse(FIELDS_50)
    op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
    frags = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    limits = GraphQLLimits()
    analysis = analyze(schema, op, frags, None, limits)
    if analysis.fields != 50 or analysis.errors:
        raise RuntimeError(f"the 50-field query measures {analysis.fields} fields")
    cost_med, cost_min = _per_call_us(lambda: analyze(schema, op, frags, None, limits))
    pv_med, pv_min = _per_call_us(lambda: validate(schema, parse(FIELDS_50)), n=200)
    await keys.aclose()
    return [
        {"case": "REST GET /projects/{id} (full stack)", "median_us": rest, "target_us": ""},
        {
            "case": "GraphQL { project(id:) } (full stack)",
            "median_us": gql,
            "vs_rest": gql / rest,
            "target_us": "",
        },
        {
            "case": f"cost analysis, 50-field query (cost {analysis.cost})",
            "median_us": cost_med,
            "min_us": cost_min,
            "target_us": 100,
        },
        {
            "case": "parse + validate, 50-field query (uncached)",
            "median_us": pv_med,
            "min_us": pv_min,
            "target_us": "",
        },
    ]


def run() -> list[dict[str, Any]]:
    """Run the suite; one row per case."""
    try:
        import graphql  # noqa: F401
    except ImportError:
        return [{"case": "graphql-core not installed (pip install 'extapi-kit[graphql]')"}]
    return asyncio.run(_run())


if __name__ == "__main__":
    for row in run():
        print(row)
