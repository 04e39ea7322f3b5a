"""Resource grants and the key lifecycle: rotation, revocation bound, defaults, audit, SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from argon2 import profiles
from pydantic import BaseModel

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.routing import ExternalAPI, ListParams
from extapi_kit.routing.grants import allowed_ids, grant_predicate
from extapi_kit.testing import FakeClock
from tests.routing.test_grants import ASSETS, CODEC, Sample, client, make_api, make_sample

pytestmark = pytest.mark.anyio


async def test_grants_survive_rotation() -> None:
    """A7: the rotated key carries the same grants (and the old one keeps them in its grace)."""
    s = make_sample()
    old, old_key = await s.service.create("k", grants={"projects": ["5"]})
    new, new_key = await s.service.rotate(old.id, grace=60)
    assert new.grants == old.grants == {"projects": ("5",)}
    async with client(s.app) as c:
        for key in (new_key, old_key):
            assert (
                await c.get("/api/v1/projects/5", headers={"X-API-Key": key})
            ).status_code == 200
            assert (
                await c.get("/api/v1/projects/4", headers={"X-API-Key": key})
            ).status_code == 404


async def test_revoked_grant_takes_effect_within_cache_ttl(tmp_path: Path) -> None:
    """A4: a grant removed by another process (SQLite, no change feed) stops within cache_ttl."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    s = make_sample(cache_ttl=10.0, store=url)
    admin = KeyService(url, hasher=Argon2Hasher(profiles.CHEAPEST), clock=s.clock)
    try:
        rec, key = await s.service.create("k", grants={"projects": ["1", "2"]})
        h = {"X-API-Key": key}
        async with client(s.app) as c:
            assert (await c.get("/api/v1/projects/2", headers=h)).status_code == 200
            await admin.update(rec.id, grants={"projects": ["1"]})  # another process
            s.clock.advance(9.9)
            # Still inside the documented bound: the cached principal is trusted.
            assert (await c.get("/api/v1/projects/2", headers=h)).status_code == 200
            s.clock.advance(0.2)
            assert (await c.get("/api/v1/projects/2", headers=h)).status_code == 404
            assert (await c.get("/api/v1/projects/1", headers=h)).status_code == 200
            await s.service.update(rec.id, grants={"projects": ["2"]})  # this process: at once
            assert (await c.get("/api/v1/projects/1", headers=h)).status_code == 404
    finally:
        await admin.aclose()
        await s.service.aclose()


async def test_key_without_entry_is_unrestricted_and_wildcard_means_all() -> None:
    """Documented default: no entry for a type = unrestricted; "*" = all; entry = only those."""
    s = make_sample()
    _, none = await s.service.create("none", grants={"orgs": ["acme"]})
    _, star = await s.service.create("star", grants={"projects": ["*"]})
    async with client(s.app) as c:
        for key in (none, star):
            r = await c.get("/api/v1/assets", headers={"X-API-Key": key}, params={"limit": 100})
            assert r.status_code == 200 and len(r.json()["data"]) == len(ASSETS)


def test_helpers_and_configuration() -> None:
    """allowed_ids/grant_predicate semantics; resource_body_fields needs a request model."""
    from extapi_kit.context import Principal

    p = Principal("k", grants={"projects": frozenset({"7"}), "orgs": frozenset({"*"})})
    assert allowed_ids(p, "projects") == frozenset({"7"}) and allowed_ids(p, "orgs") is None
    assert allowed_ids(p, "teams") is None and allowed_ids(None, "projects") is None
    keep = grant_predicate(p, "projects", "project_id")
    assert keep is not None and keep({"project_id": 7}) and not keep({"project_id": 8})
    assert not keep({}) and not keep({"project_id": True})
    with pytest.raises(ConfigurationError):
        ExternalAPI().expose("POST", "/x", handler=lambda r: None, resource_body_fields={"a": "b"})

    class Q(BaseModel):
        project_id: int | None = None

    api = ExternalAPI()
    with pytest.raises(ConfigurationError):  # a typo would silently check nothing
        api.expose(
            "GET",
            "/p/{id}",
            handler=lambda r: None,
            query_model=Q,
            resource_params={"projectid": "projects"},
        )
    api.expose(
        "GET",
        "/q",
        handler=lambda r: None,
        query_model=Q,
        resource_params={"project_id": "projects"},
    )


async def test_audit_record_carries_resource_ids_and_head_is_filtered_too() -> None:
    """Audit records name the touched project (allowed or refused); HEAD hides foreign objects."""
    from extapi_kit.audit.sink_memory import MemorySink

    sink = MemorySink()
    clock = FakeClock(1_800_000_000)
    service = KeyService(MemoryKeyStore(), hasher=Argon2Hasher(profiles.CHEAPEST), clock=clock)
    sample = Sample(app=None, service=service, clock=clock)
    app = make_api(sample).build(key_store=service, audit_sink=sink)
    _, key = await service.create("k", grants={"projects": ["1"]})
    h = {"X-API-Key": key}
    async with client(app) as c:
        assert (await c.get("/api/v1/projects/1", headers=h)).status_code == 200
        assert (await c.get("/api/v1/projects/3", headers=h)).status_code == 404
        assert (await c.head("/api/v1/svc/asset/a1x", headers=h)).status_code == 200
        assert (await c.head("/api/v1/svc/asset/a2x", headers=h)).status_code == 404
    audit: Any = cast(Any, app).app  # the AuditMiddleware under the resolver
    await audit.flush()
    got = [(r.status, r.resource_ids) for r in sink.records[:2]]
    assert got == [(200, {"projects": "1"}), (404, {"projects": "3"})]


def test_keyset_sql_restricts_to_allowed_ids(tmp_path: Path) -> None:
    """keyset_sql(allowed=...) pages only granted rows in SQLite; None adds no clause."""
    import sqlite3

    from extapi_kit.routing.pagination import keyset_sql, page_from_rows

    db = sqlite3.connect(tmp_path / "a.db")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE assets (id TEXT, project_id INTEGER)")
    db.executemany("INSERT INTO assets VALUES (?, ?)", [(a["id"], a["project_id"]) for a in ASSETS])
    params = ListParams(limit=2)
    seen: list[str] = []
    while True:
        sql, args = keyset_sql(params, CODEC, allowed={"project_id": frozenset({"2", "5"})})
        rows = [dict(r) for r in db.execute(f"SELECT * FROM assets {sql}", args)]
        page = page_from_rows(rows, params, CODEC)
        seen += [r["id"] for r in page.data]
        if page.next_cursor is None:
            break
        params = ListParams(limit=2, cursor=page.next_cursor)
    assert sorted(seen) == sorted(a["id"] for a in ASSETS if a["project_id"] in (2, 5))
    assert "IN" not in keyset_sql(ListParams(limit=2), CODEC, allowed={"project_id": None})[0]
    assert "1 = 0" in keyset_sql(ListParams(limit=2), CODEC, allowed={"x": frozenset()})[0]
    with pytest.raises(ConfigurationError):
        keyset_sql(ListParams(limit=2), CODEC, allowed={'x" OR 1': frozenset({"1"})})
    db.close()
