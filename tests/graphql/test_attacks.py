"""The classic GraphQL attacks against the studio under uvicorn: each is refused before any
resolver runs, with a GraphQL error that names its code and (where there is one) its location."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.graphql.conftest import Studio, gql


def _codes(r: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in r.json()["errors"]]


def _refused(r: httpx.Response, code: str, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert "data" not in body
    assert _codes(r)[0] == code, r.text
    error: dict[str, Any] = body["errors"][0]
    return error


def test_deep_nesting_is_refused_at_the_deepest_field(studio: Studio) -> None:
    """Q1: a query nested past max_depth (10), directly or through fragments, is refused with
    DEPTH_LIMIT_EXCEEDED naming the line and column of the field that goes too deep."""
    inner = "id"
    for _ in range(6):
        inner = f"jobs {{ project {{ {inner} }} }}"
    deep = f"{{ project(id: 7) {{ {inner} }} }}"
    with studio.client() as c:
        err = _refused(gql(c, studio.partner, deep), "DEPTH_LIMIT_EXCEEDED")
        assert "maximum depth of 10" in err["message"]
        assert err["locations"][0]["line"] == 1 and err["locations"][0]["column"] > 100
        frags = (
            "query { project(id: 7) { ...P } }\n"
            "fragment P on Project { jobs { project { jobs { project { ...Q } } } } }\n"
            "fragment Q on Project { jobs { project { jobs { project { jobs { id } } } } } }"
        )
        err = _refused(gql(c, studio.partner, frags), "DEPTH_LIMIT_EXCEEDED")
        assert err["locations"][0]["line"] == 3
        ok = gql(c, studio.partner, "{ project(id: 7) { jobs { project { name } } } }")
        assert ok.status_code == 200 and "errors" not in ok.json()


def test_circular_fragments_are_refused(studio: Studio) -> None:
    """Q2: fragments that spread each other (A -> B -> A) and a fragment spreading itself are
    refused with GRAPHQL_VALIDATION_FAILED at the spread that closes the cycle."""
    with studio.client() as c:
        two = (
            "query { ...A } fragment A on Query { ...B } "
            "fragment B on Query { projects { id } ...A }"
        )
        err = _refused(gql(c, studio.partner, two), "GRAPHQL_VALIDATION_FAILED")
        assert "within itself" in err["message"] and err["locations"]
        own = "query { project(id: 7) { ...S } } fragment S on Project { id ...S }"
        err = _refused(gql(c, studio.partner, own), "GRAPHQL_VALIDATION_FAILED")
        assert err["locations"][0]["column"] == own.rindex("...S") + 1


def test_alias_batching_of_a_cheap_field_is_refused(studio: Studio) -> None:
    """Q3: 1,000 aliases of a cheap field (a scalar costing 0, or one project) in one request
    are refused with ALIAS_LIMIT_EXCEEDED; nothing runs and the request costs 1."""
    cheap = "{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }"
    objects = "{ " + " ".join(f"p{i}: project(id: 7) {{ id }}" for i in range(1000)) + " }"
    with studio.client() as c:
        first = gql(c, studio.partner, "{ __typename }")
        before = _remaining(first)
        for query in (cheap, objects):
            r = gql(c, studio.partner, query)
            # The token cap may stop the parser first: either way it never runs.
            assert r.status_code == 400, r.text
            assert set(_codes(r)) <= {"ALIAS_LIMIT_EXCEEDED", "GRAPHQL_PARSE_FAILED"}
            assert "data" not in r.json()
        # Below the token cap, the alias limit itself decides.
        forty = "{ " + " ".join(f"p{i}: project(id: 7) {{ id }}" for i in range(40)) + " }"
        err = _refused(gql(c, studio.partner, forty), "ALIAS_LIMIT_EXCEEDED")
        assert "40 aliases" in err["message"]
        last = gql(c, studio.partner, "{ __typename }")
        assert _remaining(last) == before - 4  # three refusals at cost 1, one query at 1


def test_field_duplication_and_fragment_fan_out_are_refused(studio: Studio) -> None:
    """Q4: one field repeated 400 times, or fragments that each spread the previous one twice
    (2^12 fields from a few lines), are refused with FIELD_LIMIT_EXCEEDED / COST_LIMIT_EXCEEDED
    before validation (whose overlap check is quadratic) runs."""
    dup = "{ project(id: 7) { " + "id " * 400 + "} }"
    lines = ["fragment F0 on Project { id name }"]
    for i in range(1, 13):
        lines.append(f"fragment F{i} on Project {{ ...F{i - 1} ...F{i - 1} }}")
    bomb = "{ project(id: 7) { ...F12 } }\n" + "\n".join(lines)
    with studio.client() as c:
        err = _refused(gql(c, studio.partner, dup), "FIELD_LIMIT_EXCEEDED")
        assert "401 fields" in err["message"]
        r = gql(c, studio.partner, bomb)
        assert r.status_code == 400
        assert "FIELD_LIMIT_EXCEEDED" in _codes(r)
        # Objects in the fragment: the cost (100 projects x 2^12 asset lists) is refused too.
        costly = ["fragment F0 on Project { assets { id } }", *lines[1:]]
        list_bomb = "{ projects(first: 100) { ...F12 } }\n" + "\n".join(costly)
        assert "COST_LIMIT_EXCEEDED" in _codes(gql(c, studio.partner, list_bomb))


def test_huge_first_values_are_refused(studio: Studio) -> None:
    """Q5: first: 1000000 as a literal, a variable or a variable's default is refused with
    LIST_LIMIT_EXCEEDED at the argument; 100 (the maximum) runs."""
    with studio.client() as c:
        err = _refused(
            gql(c, studio.partner, "{ projects(first: 1000000) { id } }"), "LIST_LIMIT_EXCEEDED"
        )
        assert err["locations"] == [{"line": 1, "column": 12}]
        q = "query Q($n: Int) { projects(first: $n) { id } }"
        _refused(gql(c, studio.partner, q, variables={"n": 10**9}), "LIST_LIMIT_EXCEEDED")
        d = "query Q($n: Int = 5000) { projects(first: $n) { id } }"
        _refused(gql(c, studio.partner, d), "LIST_LIMIT_EXCEEDED")
        nested = "{ project(id: 7) { assets(first: 101) { id } } }"
        _refused(gql(c, studio.partner, nested), "LIST_LIMIT_EXCEEDED")
        ok = gql(c, studio.operator, "{ projects(first: 100) { id } }")
        assert ok.status_code == 200 and len(ok.json()["data"]["projects"]) == 30


def test_batched_arrays_are_refused_by_default(studio: Studio) -> None:
    """Q7: a JSON array of operations is refused with BATCHING_DISABLED (one request cannot
    carry many operations past the per-request limits); the refusal costs 1."""
    with studio.client() as c:
        before = _remaining(gql(c, studio.partner, "{ __typename }"))
        batch = [{"query": "{ projects { id } }"}] * 50
        r = c.post("/api/v1/graphql", json=batch, headers={"X-API-Key": studio.partner})
        _refused(r, "BATCHING_DISABLED")
        assert _remaining(r) == before - 1


def test_introspection_is_refused_to_partners(studio: Studio) -> None:
    """Q8: __schema and __type are refused to a partner key with INTROSPECTION_DISABLED (at the
    field's location, also inside a fragment); a key holding graphql:introspect may
    introspect, and __typename stays allowed to everyone."""
    with studio.client() as c:
        err = _refused(
            gql(c, studio.partner, "{ __schema { types { name } } }"), "INTROSPECTION_DISABLED"
        )
        assert err["locations"] == [{"line": 1, "column": 3}]
        hidden = 'query { ...I } fragment I on Query { __type(name: "Project") { name } }'
        _refused(gql(c, studio.partner, hidden), "INTROSPECTION_DISABLED")
        ok = gql(c, studio.operator, "{ __schema { queryType { name } } }")
        assert ok.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        assert gql(c, studio.partner, "{ __typename }").json() == {"data": {"__typename": "Query"}}


def test_field_scopes_are_checked_before_execution(studio: Studio) -> None:
    """Q10: a field whose scope the key lacks (Query.models, Project.jobs reached through a
    fragment, a mutation) is refused as a whole with 403 FORBIDDEN naming the field and its
    location; nothing runs, so a mutation never half-happens."""
    with studio.client() as c:
        err = _refused(gql(c, studio.partner, "{ models { id } }"), "FORBIDDEN", 403)
        assert "'Query.models' needs the scope 'models:read'" in err["message"]
        assert err["locations"] == [{"line": 1, "column": 3}]
        q = "{ project(id: 1) { ...J } } fragment J on Project { jobs { id } }"
        err = _refused(gql(c, studio.reader, q), "FORBIDDEN", 403)
        assert "Project.jobs" in err["message"]
        m = 'mutation { createJob(projectId: 1, model: "sdxl", prompt: "x") { id } }'
        _refused(gql(c, studio.reader, m), "FORBIDDEN", 403)
        jobs = gql(c, studio.operator, "{ jobs { id } }").json()["data"]["jobs"]
        assert jobs == []


def test_malformed_requests_get_graphql_errors_never_a_traceback(studio: Studio) -> None:
    """Q12: a body that is not JSON, not an object, not JSON-typed, or a query that does not
    parse or validate answers 400/415 with GraphQL errors and codes (parse and validation
    errors with locations); no answer carries a traceback."""
    key = {"X-API-Key": studio.partner}
    with studio.client() as c:
        bad_json = c.post(
            "/api/v1/graphql", content=b"{nope", headers={**key, "content-type": "application/json"}
        )
        _refused(bad_json, "BAD_REQUEST")
        form = c.post(
            "/api/v1/graphql",
            content=b"query={x}",
            headers={**key, "content-type": "application/x-www-form-urlencoded"},
        )
        _refused(form, "BAD_REQUEST", 415)
        payload: Any
        for payload in (
            "string",
            {"query": 5},
            {"variables": []},
            {"query": "{ __typename }", "variables": 3},
        ):
            r = c.post("/api/v1/graphql", json=payload, headers=key)
            _refused(r, "BAD_REQUEST")
        err = _refused(gql(c, studio.partner, "{ projects { id }"), "GRAPHQL_PARSE_FAILED")
        assert err["locations"] == [{"line": 1, "column": 18}]
        err = _refused(
            gql(c, studio.partner, "{\n  projects { nope } }"), "GRAPHQL_VALIDATION_FAILED"
        )
        assert "nope" in err["message"] and err["locations"] == [{"line": 2, "column": 14}]
        two = "query A { __typename } query B { __typename }"
        _refused(gql(c, studio.partner, two), "OPERATION_RESOLUTION_FAILURE")
        _refused(gql(c, studio.partner, two, operationName="C"), "OPERATION_RESOLUTION_FAILURE")
        assert gql(c, studio.partner, two, operationName="B").json() == {
            "data": {"__typename": "Query"}
        }
        typed = gql(
            c,
            studio.partner,
            "query Q($n: Int) { projects(first: $n) { id } }",
            variables={"n": "x"},
        )
        assert typed.status_code == 400 and "data" not in typed.json()
        assert _codes(typed) == ["BAD_USER_INPUT"]
        for r in (bad_json, form, typed):
            assert "Traceback" not in r.text and 'File "' not in r.text
        # Unauthenticated: the stack's 401 problem, before anything is parsed.
        anon = c.post("/api/v1/graphql", json={"query": "{ __typename }"})
        assert anon.status_code == 401


def _remaining(r: httpx.Response) -> int:
    # RateLimit: "read";r=<remaining>;t=<reset> (IETF draft -10)
    header = r.headers["ratelimit"]
    return int(next(p[2:] for p in header.split(";") if p.startswith("r=")))


def _json(r: httpx.Response) -> Any:
    return json.loads(r.text)
