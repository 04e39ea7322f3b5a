"""The studio's GraphQL endpoint under uvicorn: grants, cost charging and idempotency."""

from __future__ import annotations

import httpx

from tests.graphql.conftest import Studio, gql
from tests.graphql.test_attacks import _remaining


def _job(c: httpx.Client, key: str, project: int, prompt: str) -> int:
    r = c.post(
        "/api/v1/jobs",
        json={"project_id": project, "model": "sdxl", "prompt": prompt},
        headers={"X-API-Key": key},
    )
    assert r.status_code == 201, r.text
    job_id: int = r.json()["id"]
    return job_id


def test_foreign_and_missing_objects_answer_the_same_bytes(studio: Studio) -> None:
    """Q9: for a project-7 key, a foreign project, job or asset (by id, by list, through a
    nested field, or as a mutation target) is null with the NOT_FOUND error of a missing one,
    byte for byte; lists hold only project 7's objects; foreign writes never happen."""
    with studio.client() as c:
        theirs = _job(c, studio.operator, 5, "secret-prompt-5")
        mine = _job(c, studio.operator, 7, "own-prompt-7")
        p = studio.partner

        def same(template: str, foreign: object, missing: object = 99999) -> httpx.Response:
            a = gql(c, p, template % foreign)
            b = gql(c, p, template % missing)
            assert a.status_code == b.status_code == 200
            assert a.content == b.content, (a.text, b.text)
            body = a.json()
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
            assert body["errors"][0]["message"] == "Not found."
            return a

        same("{ project(id: %s) { id name } }", 5)
        same("{ job(id: %s) { id prompt project { name } } }", theirs)
        same("{ asset(id: %s) { id name project { name } } }", 9)
        same("mutation { approveAsset(id: %s) { id approved } }", 9)
        same('mutation { createJob(projectId: %s, model: "sdxl", prompt: "x") { id } }', 5)
        own = gql(c, p, f"{{ job(id: {mine}) {{ prompt project {{ id name }} }} }}").json()
        assert own == {
            "data": {
                "job": {"prompt": "own-prompt-7", "project": {"id": "7", "name": "Project 07"}}
            }
        }
        lists = gql(
            c,
            p,
            "{ projects(first: 5) { id assets { projectId } jobs { prompt } } "
            "jobs(first: 20) { projectId } }",
        )
        assert lists.status_code == 200, lists.text
        data = lists.json()["data"]
        assert [x["id"] for x in data["projects"]] == ["7"]
        assert {a["projectId"] for a in data["projects"][0]["assets"]} == {"7"}
        assert {j["projectId"] for j in data["jobs"]} == {"7"}
        assert "secret-prompt-5" not in lists.text
        # The foreign asset was never approved; the operator sees it untouched.
        seen = gql(
            c, studio.operator, "{ asset(id: 9) { approved } jobs(first: 100) { projectId } }"
        )
        assert seen.json()["data"]["asset"] == {"approved": False}
        assert sorted(j["projectId"] for j in seen.json()["data"]["jobs"]) == ["5", "7"]


def test_rate_limit_is_charged_the_computed_cost(studio: Studio) -> None:
    """Q6: one project costs 1 and a hundred cost 100 of the read budget (RateLimit headers
    show it), a mutation costs its declared 10 of the write budget, an
    operation over max_cost is refused (COST_LIMIT_EXCEEDED) at cost 1, and a query that
    no longer fits the budget is a 429."""
    with studio.client() as c:
        p = studio.operator
        r0 = gql(c, p, "{ project(id: 7) { id } }")
        r1 = gql(c, p, "{ project(id: 7) { id } }")
        assert _remaining(r0) - _remaining(r1) == 1
        r2 = gql(c, p, "{ projects(first: 100) { id } }")
        assert _remaining(r1) - _remaining(r2) == 100
        r3 = gql(c, p, "{ projects(first: 10) { id assets(first: 5) { id } } }")
        assert _remaining(r2) - _remaining(r3) == 10 * (1 + 5)
        over = gql(c, p, "{ projects(first: 100) { id assets(first: 10) { id } } }")
        assert over.status_code == 400
        assert over.json()["errors"][0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
        assert "1100" in over.json()["errors"][0]["message"]
        assert _remaining(r3) - _remaining(over) == 1
        w0 = gql(c, p, 'mutation { createJob(projectId: 7, model: "m", prompt: "p") { id } }')
        w1 = gql(c, p, 'mutation { createJob(projectId: 7, model: "m", prompt: "q") { id } }')
        assert w0.headers["ratelimit"].startswith('"write"')
        assert _remaining(w0) - _remaining(w1) == 10
        spent = gql(c, p, "{ projects(first: 100) { id } }")
        left = _remaining(spent)
        assert left == 300 - (1 + 1 + 100 + 60 + 1 + 100)
        too_much = gql(c, p, f"{{ projects(first: {left + 1}) {{ id }} }}")
        assert too_much.status_code == 429
        assert too_much.headers["content-type"] == "application/problem+json"
        fits = gql(c, p, f"{{ projects(first: {left}) {{ id }} }}")
        assert fits.status_code == 200 and _remaining(fits) == 0


def test_mutations_take_idempotency_keys_and_queries_never_do(studio: Studio) -> None:
    """Q13: a mutation retried with the same Idempotency-Key runs once (the same job comes
    back, one row exists); two different queries sent with one Idempotency-Key each answer
    their own data (queries are never stored or replayed)."""
    with studio.client() as c:
        m = 'mutation { createJob(projectId: 7, model: "sdxl", prompt: "once") { id } }'
        h = {"Idempotency-Key": "gql-retry-1"}
        a = gql(c, studio.partner, m, headers=h)
        b = gql(c, studio.partner, m, headers=h)
        assert a.status_code == b.status_code == 200
        assert a.json() == b.json()
        jobs = gql(c, studio.operator, "{ jobs(first: 100) { prompt } }").json()["data"]["jobs"]
        assert [j["prompt"] for j in jobs].count("once") == 1
        q = {"Idempotency-Key": "gql-query-1"}
        one = gql(c, studio.partner, "{ project(id: 7) { name } }", headers=q)
        two = gql(c, studio.partner, "{ project(id: 7) { status } }", headers=q)
        assert one.json() == {"data": {"project": {"name": "Project 07"}}}
        assert two.json() == {"data": {"project": {"status": "active"}}}


def test_explorer_is_served_without_any_third_party_origin(studio: Studio) -> None:
    """The explorer page is public, self-contained (no script or style from another origin)
    and locked down by its Content-Security-Policy; the demo index links it."""
    with studio.client() as c:
        page = c.get("/api/v1/graphql/explorer")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert "http://" not in page.text and "https://" not in page.text
        assert '"/api/v1/graphql"' in page.text
        assert "/api/v1/graphql/explorer" in c.get("/").text
