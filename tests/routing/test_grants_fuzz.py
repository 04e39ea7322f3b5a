"""Property test of resource grants across every route of a sample API (Z3, issue 8).

For keys with random grants (no entry, ``"*"``, or a random subset of project ids) and a random
project id, every route of the sample API (handler targets and a ``to=`` internal Starlette
app) succeeds if and only if the id is granted and exists; otherwise it is the one not-found
problem, never a 403, never a 200 carrying a foreign project. Lists never carry a foreign item,
and following ``next_cursor`` to the end yields exactly the granted items.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.routing.test_grants import ASSETS, PROJECTS, client, make_sample

pytestmark = pytest.mark.anyio

IDS = (*PROJECTS, "6", "7")  # 6 and 7 do not exist
grants_strategy = st.one_of(
    st.none(),  # no "projects" entry: unrestricted (documented default)
    st.just(["*"]),
    st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True),
)


def _project_ids(doc: Any) -> set[str]:
    """Every project id an answer carries (objects, lists and envelopes)."""
    if isinstance(doc, list):
        return set().union(*(_project_ids(d) for d in doc)) if doc else set()
    if isinstance(doc, dict):
        out: set[str] = set()
        for key in ("project_id", "id"):
            if isinstance(doc.get(key), int):
                out.add(str(doc[key]))
        for key in ("data", "items"):
            out |= _project_ids(doc.get(key))
        return out
    return set()


async def _walk(c: httpx.AsyncClient, url: str, key: str, limit: int) -> list[dict[str, Any]]:
    """Follow next_cursor to the end; return every item; no page is short before the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(len(ASSETS) + 2):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await c.get(url, params=params, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["data"]) == limit  # a short page only ever ends the list
    raise AssertionError("cursor never ended")


@settings(max_examples=60, deadline=None)
@given(grants=grants_strategy, pid=st.sampled_from(IDS), limit=st.integers(1, 4))
async def test_request_succeeds_iff_id_is_granted(
    grants: list[str] | None, pid: str, limit: int
) -> None:
    """Z3: 200 iff granted (and existing), else the same 404; no 403; no foreign data."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": grants} if grants else None)
    granted = {p for p in IDS if grants is None or "*" in grants or p in grants}
    h = {"X-API-Key": key}
    body = {"project_id": int(pid), "name": "n"}
    async with client(s.app) as c:
        reference_404 = await c.get("/api/v1/no/such/route", headers=h)
        calls: list[tuple[str, str, Any]] = [
            ("GET", f"/api/v1/projects/{pid}", None),
            ("GET", f"/api/v1/projects/{pid}/assets", None),
            ("POST", f"/api/v1/projects/{pid}/assets", {"name": "n"}),
            ("POST", "/api/v1/assets", body),
            ("GET", f"/api/v1/public/projects/{pid}", None),
            ("GET", f"/api/v1/svc/projects/{pid}", None),
            ("GET", f"/api/v1/svc/asset/a{pid}x", None),
            ("POST", f"/api/v1/svc/asset/a{pid}x/approve", None),
            ("POST", f"/api/v1/asset/a{pid}z/archive", None),
        ]
        for i, (method, url, payload) in enumerate(calls):
            s.calls.clear()
            r = await c.request(method, url, json=payload, headers=h)
            assert r.status_code != 403
            if pid in granted and (pid in PROJECTS or i == 4):
                assert r.status_code == 200, (i, r.text)
                assert _project_ids(r.json()) <= {pid}
            else:
                assert r.status_code == 404, (i, r.text)
                assert r.content == reference_404.content
                if pid not in granted and i != 6:
                    # Refused before the target ran (the asset route names no project in its
                    # request, so there the answer is hidden by the response filter instead;
                    # the owner-lookup routes ran only their lookup).
                    assert s.calls in ([], ["lookup"])
        # A query parameter naming the project: the internal service is never asked.
        q = await c.get("/api/v1/svc/assets", params={"project_id": pid}, headers=h)
        if pid in granted:
            assert q.status_code == 200 and _project_ids(q.json()) <= {pid}
        else:
            assert q.status_code == 404 and q.content == reference_404.content
        # Lists: never a foreign item; walking the cursors yields exactly the granted items.
        expected = sorted(a["id"] for a in ASSETS if str(a["project_id"]) in granted)
        for url in ("/api/v1/assets", "/api/v1/svc/assets"):
            items = await _walk(c, url, key, limit)
            assert sorted(a["id"] for a in items) == expected, url
        leaky = await c.get("/api/v1/svc/leaky", headers=h)
        assert leaky.status_code == 200
        assert sorted(a["id"] for a in leaky.json()["data"]) == expected
