"""Queries and mutations generated from the schema by hypothesis-graphql, sent over HTTP by a
project-7 key: never a 5xx or an internal error, and never another project's data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, queries

from graphql import build_client_schema, get_introspection_query
from tests.graphql.conftest import Studio, gql, serve_studio

# Names only other projects' rows carry (the seed names projects "Project NN" and assets
# "asset-<project>-<n>"; project 7 belongs to org acme; the foreign job's prompt is unique).
_FOREIGN = re.compile(r"Project (?!07)\d\d|asset-(?!7-)\d+-|globex|secret-prompt")


@pytest.fixture
def roomy(tmp_path: Path) -> Iterator[Studio]:
    """The studio with budgets large enough for a few hundred generated operations."""
    with serve_studio(
        tmp_path / "d", read_limit="1000000/minute", write_limit="1000000/minute"
    ) as s:
        yield s


def _project_ids(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "projectId" and isinstance(v, str):
                yield v
            yield from _project_ids(v)
    elif isinstance(value, list):
        for v in value:
            yield from _project_ids(v)


def test_generated_operations_never_fail_or_leak(roomy: Studio) -> None:
    """Q14: hypothesis-graphql queries and mutations against the schema (fetched by
    introspection with an operator key) from a project-7 key: no 5xx, no INTERNAL_SERVER_ERROR,
    every answer is GraphQL JSON, and no foreign project's data ever appears."""
    with roomy.client() as c:
        r = c.post(
            "/api/v1/jobs",
            json={"project_id": 5, "model": "sdxl", "prompt": "secret-prompt-5"},
            headers={"X-API-Key": roomy.operator},
        )
        assert r.status_code == 201
        intro = gql(c, roomy.operator, get_introspection_query())
        assert intro.status_code == 200, intro.text
        schema = build_client_schema(intro.json()["data"])
        seen: dict[str, int] = {}

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(op=st.one_of(queries(schema), mutations(schema)))
        def check(op: object) -> None:
            answer = gql(c, roomy.partner, str(op))
            assert answer.status_code < 500, (op, answer.text)
            assert answer.headers["content-type"] == "application/json"
            body = answer.json()
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", ())]
            assert "INTERNAL_SERVER_ERROR" not in codes, (op, answer.text)
            assert not _FOREIGN.search(answer.text), (op, answer.text)
            assert set(_project_ids(body.get("data"))) <= {"7"}, (op, answer.text)
            key = "data" if body.get("data") is not None else str(codes[:1])
            seen[key] = seen.get(key, 0) + 1

        check()
        # The run was not all refusals: some operations executed and answered data.
        assert seen.get("data", 0) > 10, seen
        # Nothing written outside project 7: no foreign asset approved, no foreign job added.
        after = gql(c, roomy.operator, "{ jobs(first: 100) { projectId prompt } }")
        foreign = [j for j in after.json()["data"]["jobs"] if j["projectId"] != "7"]
        assert foreign == [{"projectId": "5", "prompt": "secret-prompt-5"}]
        for project in range(1, 31):
            if project == 7:
                continue
            q = f"{{ project(id: {project}) {{ assets(first: 5) {{ approved }} }} }}"
            assets = gql(c, roomy.operator, q).json()["data"]["project"]["assets"]
            assert not any(a["approved"] for a in assets), project
