"""The studio's project-scoped keys end to end: self-service webhooks and writes by object id.

A partner key granted project 7 registers its own webhook endpoint through the public API and a
real uvicorn receiver gets the events of project 7 only (Z3 over webhooks); the same key cannot
approve another project's asset or read another project's job (Z3, writes and reads by object
id, refused before the internal service runs).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import standardwebhooks

from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.keys.service import KeyService
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio


async def _keys(data: Path) -> tuple[str, str, str]:
    svc = KeyService(store_urls(data)["keys"])
    try:
        scopes = ["projects:read", "assets:write", "jobs:read", "jobs:write"]
        hooks = ["webhooks:read", "webhooks:write"]
        _, partner = await svc.create("p7", owner="p7", scopes=scopes + hooks,
                                      grants={"projects": ["7"]})  # fmt: skip
        _, other = await svc.create("p5", owner="p5", scopes=hooks, grants={"projects": ["5"]})
        _, full = await svc.create("platform", scopes=scopes)
    finally:
        await svc.aclose()
    return partner, other, full


async def test_partner_webhooks_and_object_writes_stay_inside_its_projects(
    tmp_path: Path,
) -> None:
    """Z3: self-service endpoint of a project-7 key receives project 7's events only; approving
    or reading another project's objects is the missing-object 404; another tenant cannot see
    or delete the endpoint; the secret is shown once and never listed."""
    data = tmp_path / "d"
    app = create_app(data, partner_loopback_webhooks=True)  # the receiver is on 127.0.0.1
    partner, other, full = await _keys(data)
    recorder = Recorder()
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with (
        serve(recorder) as base,
        run_lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        p, o, f = ({"X-API-Key": k} for k in (partner, other, full))
        reg = await c.post(
            "/api/v1/webhooks/endpoints",
            headers=p,
            json={"url": base + "/hook", "event_types": ["asset.approved"]},
        )
        assert reg.status_code == 201, reg.text
        created = reg.json()
        secret, ep_id = created["secret"], created["endpoint"]["id"]
        assert created["endpoint"]["grants"] == {"projects": ["7"]}
        listed = await c.get("/api/v1/webhooks/endpoints", headers=p)
        assert [e["id"] for e in listed.json()["data"]] == [ep_id]
        assert secret not in listed.text
        # Another tenant: not listed, and show/delete are the same 404 as a missing endpoint.
        assert (await c.get("/api/v1/webhooks/endpoints", headers=o)).json()["data"] == []
        theirs = await c.get(f"/api/v1/webhooks/endpoints/{ep_id}", headers=o)
        missing = await c.get("/api/v1/webhooks/endpoints/ep_nope", headers=o)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content
        assert (await c.delete(f"/api/v1/webhooks/endpoints/{ep_id}", headers=o)).status_code == 404

        # Writes by object id: asset 9 belongs to project 5, asset 13 to project 7.
        foreign = await c.post("/api/v1/assets/9/approve", headers=p)
        nowhere = await c.post("/api/v1/assets/99999/approve", headers=p)
        assert foreign.status_code == nowhere.status_code == 404
        assert foreign.content == nowhere.content
        assert (await c.post("/api/v1/assets/13/approve", headers=p)).status_code == 200
        assert (await c.post("/api/v1/assets/10/approve", headers=f)).status_code == 200

        # Jobs: read by id only inside the key's projects.
        job = {"model": "sdxl", "prompt": "a fox"}
        theirs_job = await c.post("/api/v1/jobs", headers=f, json={**job, "project_id": 5})
        assert theirs_job.status_code == 201
        jid = theirs_job.json()["id"]
        assert (await c.get(f"/api/v1/jobs/{jid}", headers=p)).status_code == 404
        assert (await c.get(f"/api/v1/jobs/{jid}/events", headers=p)).status_code == 404
        assert (await c.get(f"/api/v1/jobs/{jid}", headers=f)).status_code == 200

        await recorder.wait_for(1)
        await asyncio.sleep(0.5)  # room for a wrongly scoped second delivery to arrive
        payloads = [
            standardwebhooks.Webhook(secret).verify(r.body, r.headers) for r in recorder.requests
        ]
        assert [(x["type"], x["data"]["id"]) for x in payloads] == [("asset.approved", 13)]
        deliveries = await c.get(f"/api/v1/webhooks/endpoints/{ep_id}/deliveries", headers=p)
        assert [d["status"] for d in deliveries.json()["data"]] == ["succeeded"]
        gone = await c.delete(f"/api/v1/webhooks/endpoints/{ep_id}", headers=p)
        assert gone.status_code == 204
    assert all(secret not in json.dumps(r.headers) for r in recorder.requests)


async def test_partners_cannot_point_webhooks_at_the_platform_itself(tmp_path: Path) -> None:
    """W1: in the studio as shipped, a partner's self-service registration of a loopback URL (the
    internal app, the render farm) is a 422 problem, while the operator may still add local
    receivers through the admin side."""
    data = tmp_path / "d"
    app = create_app(data)
    partner, _, _ = await _keys(data)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with run_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for url in ("http://127.0.0.1:8000/internal/users", "http://localhost/x",
                    "http://[::1]:9/x", "http://169.254.169.254/latest"):  # fmt: skip
            r = await c.post(
                "/api/v1/webhooks/endpoints", headers={"X-API-Key": partner}, json={"url": url}
            )
            assert r.status_code == 422, (url, r.text)
            assert r.headers["content-type"] == "application/problem+json"


async def test_studio_partner_hooks_hear_only_their_owner_and_stars_stay_out_of_admin(
    tmp_path: Path,
) -> None:
    """Z8 and A14 in the studio: a read-only partner's self-service endpoint (real receiver) gets
    api_key.created for its own owner's new key, never for another owner's admin key made in
    the admin API; a "full access" ['*'] key gets 403 from the admin API and cannot mint keys;
    a project-1 sibling key does not see the partner's org-wide endpoint (Z9)."""
    data = tmp_path / "d"
    app = create_app(data, partner_loopback_webhooks=True)
    svc = KeyService(store_urls(data)["keys"])
    hooks = ["webhooks:read", "webhooks:write"]
    try:
        _, admin = await svc.create("ops", owner="ops", scopes=["admin", "projects:read"])
        _, reader = await svc.create("r1", owner="r1", scopes=["projects:read", *hooks])
        _, p1 = await svc.create("r1-p1", owner="r1", scopes=hooks, grants={"projects": ["1"]})
        _, star = await svc.create("r1-full", owner="r1", scopes=["*"])
    finally:
        await svc.aclose()
    recorder = Recorder()
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with (
        serve(recorder) as base,
        run_lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        a, r, s = ({"X-API-Key": k} for k in (admin, reader, star))
        reg = await c.post(
            "/api/v1/webhooks/endpoints",
            headers=r,
            json={"url": base + "/hook", "event_types": ["api_key.created", "api_key.revoked"]},
        )
        assert reg.status_code == 201, reg.text
        secret, ep_id = reg.json()["secret"], reg.json()["endpoint"]["id"]
        hidden = await c.get(f"/api/v1/webhooks/endpoints/{ep_id}", headers={"X-API-Key": p1})
        assert hidden.status_code == 404  # Z9: not within the project-1 key's grants

        assert (await c.get("/admin/v1/keys", headers=s)).status_code == 403
        assert (await c.get("/admin/v1/audit", headers=s)).status_code == 403
        minted = await c.post("/admin/v1/keys", headers=s, json={"name": "x", "owner": "r1"})
        assert minted.status_code == 403
        other = await c.post(
            "/admin/v1/keys", headers=a, json={"name": "globex-admin", "owner": "globex",
                                               "scopes": ["admin"]},
        )  # fmt: skip
        assert other.status_code == 201, other.text
        ours = await c.post("/admin/v1/keys", headers=a, json={"name": "r1-ci", "owner": "r1"})
        assert ours.status_code == 201, ours.text
        await recorder.wait_for(1)
        await asyncio.sleep(0.5)  # room for a wrongly addressed delivery to arrive
    payloads = [
        standardwebhooks.Webhook(secret).verify(x.body, x.headers) for x in recorder.requests
    ]
    assert [(p["type"], p["data"]["id"]) for p in payloads] == [
        ("api_key.created", ours.json()["key"]["id"])
    ]
    assert all("globex" not in x.body.decode() for x in recorder.requests)
