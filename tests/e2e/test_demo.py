"""End to end: ``extapi-kit demo`` under uvicorn, played by a third-party integration."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import standardwebhooks

from tests.e2e._demo import DemoServer, raw_request, run_cli, start_demo
from tests.webhooks.receivers import Recorder, serve

PARTNER_SCOPES = (
    "projects:read,projects:write,assets:write,jobs:read,jobs:write,models:read,tools:use"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """One demo server (embedded SQLite default) shared by this module's tests."""
    # moving-window: exact budgets, so "the third write in a row is refused" holds at any time.
    data = tmp_path_factory.mktemp("demo") / "data"
    server = start_demo(data, "--rate-strategy", "moving-window")
    try:
        yield server
    finally:
        server.stop()


async def _create_key(demo: DemoServer, name: str, *extra: str) -> dict[str, Any]:
    store = demo.stores["keys"]
    created: dict[str, Any] = await run_cli(
        "keys", "create", "--store", store, "--name", name, "--scopes", PARTNER_SCOPES, *extra
    )
    return created


async def _until_status(c: httpx.AsyncClient, key: str, status: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        got = (await c.get("/api/v1/models", headers={"X-API-Key": key})).status_code
        if got == status:
            return
        assert time.monotonic() < deadline, f"still {got}, expected {status}"
        await anyio.sleep(0.25)


async def _event(recorder: Recorder, secret: str, kind: str, within: float = 15) -> Any:
    """Return the first delivery of type ``kind``, checking its Standard Webhooks signature."""
    deadline = time.monotonic() + within
    while True:
        for got in list(recorder.requests):
            payload = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
            if payload["type"] == kind:
                return payload
        assert time.monotonic() < deadline, f"no {kind} delivery"
        await anyio.sleep(0.1)


async def _pages(c: httpx.AsyncClient, h: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = (await c.get("/api/v1/projects", params=query, headers=h)).json()
        items += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items


@pytest.mark.anyio
async def test_third_party_integration_end_to_end(demo: DemoServer) -> None:
    """A partner's whole journey through the demo: CLI key, pages, idempotent job, signed webhook,
    429 with Retry-After, SSE progress, proxied tool, rotation with grace, revocation, audit."""
    partner = await _create_key(demo, "partner")
    key, key_id = partner["key"], partner["id"]
    h = {"X-API-Key": key}
    recorder = Recorder()
    async with (
        serve(recorder) as hook_url,
        httpx.AsyncClient(base_url=demo.url, timeout=20) as c,
    ):
        assert (await c.get("/api/v1/projects")).status_code == 401

        # Cursor pages: every project exactly once, filters and sorting on declared fields.
        items = await _pages(c, h, limit=7)
        ids = [p["id"] for p in items]
        assert len(ids) == len(set(ids)) >= 30
        assert all("internal_cost_center" not in p for p in items)
        globex = await _pages(c, h, limit=4, org_id="globex", sort="-created_at")
        assert len(globex) == 10 and {p["org_id"] for p in globex} == {"globex"}
        assert [p["created_at"] for p in globex] == sorted(
            (p["created_at"] for p in globex), reverse=True
        )

        # A webhook endpoint registered by the operator CLI, on the demo's own store.
        ep = await run_cli(
            "webhooks", "add", f"{hook_url}/hooks", "--store", demo.stores["webhooks"],
            "--events", "job.completed,project.created,asset.approved,api_key.created",
            "--allow-loopback",
        )  # fmt: skip
        await anyio.sleep(1.2)  # the dispatcher's endpoint cache (1 s) sees it

        # The same job submitted twice with one Idempotency-Key: one job.
        body = {"project_id": 3, "model": "sdxl", "prompt": f"fox {time.time()}"}
        wh = {**h, "Idempotency-Key": "job-fox-1"}
        first = await c.post("/api/v1/jobs", json=body, headers=wh)
        second = await c.post("/api/v1/jobs", json=body, headers=wh)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        job_id = first.json()["id"]
        with sqlite3.connect(demo.data_dir / "studio.db") as db:
            count = db.execute("SELECT COUNT(*) FROM jobs WHERE prompt = ?", (body["prompt"],))
            assert count.fetchone()[0] == 1

        # Progress over SSE, through the whole stack.
        events = []
        async with c.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=h) as sse:
            assert sse.headers["content-type"].startswith("text/event-stream")
            async for line in sse.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert events[-1]["status"] == "completed" and events[-1]["progress"] == 100

        # job.completed arrives at the receiver, signed (Standard Webhooks); so do the others.
        payload = await _event(recorder, ep["secret"], "job.completed")
        assert payload["data"]["id"] == job_id and payload["data"]["status"] == "completed"
        made = await c.post("/api/v1/projects", json={"name": "Launch film"}, headers=h)
        assert made.status_code == 201 and "internal_cost_center" not in made.json()
        created = await _event(recorder, ep["secret"], "project.created")
        assert created["data"]["id"] == made.json()["id"]

        # The render farm, proxied with its own token injected (the partner's key never sent).
        farm = await c.get("/api/v1/tools/renderfarm/status", headers=h)
        assert farm.status_code == 200 and farm.json()["nodes"] == 8
        queued = await c.post("/api/v1/tools/renderfarm/queue", json={"frames": 4}, headers=h)
        assert queued.status_code == 202 and queued.json() == {"queued": True, "frames": 4}
        assert (await c.get("/api/v1/tools/nope/status", headers=h)).status_code == 404

        # A key with a tiny write budget: exhaust it, honour Retry-After, get through again.
        small = await _create_key(demo, "small", "--rate-limit", "write=2/2seconds")
        sh = {"X-API-Key": small["key"]}
        statuses = [(await c.post("/api/v1/assets/1/approve", headers=sh)) for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        retry_after = int(statuses[-1].headers["retry-after"])
        assert 1 <= retry_after <= 2
        await anyio.sleep(retry_after)
        assert (await c.post("/api/v1/assets/1/approve", headers=sh)).status_code == 200
        assert (await _event(recorder, ep["secret"], "asset.approved"))["data"]["id"] == 1

        # The admin API is mounted at /admin (when installed): a key made there announces itself.
        if (await c.get("/health")).json()["admin"]:
            ah = {"X-API-Key": demo.info["admin_key"]}
            made_key = await c.post(
                "/admin/v1/keys", json={"name": "via-admin", "scopes": ["models:read"]}, headers=ah
            )
            assert made_key.is_success, made_key.text
            secret = made_key.json()["secret"]
            assert (await c.get("/api/v1/models", headers={"X-API-Key": secret})).status_code == 200
            announced = await _event(recorder, ep["secret"], "api_key.created")
            assert announced["data"]["name"] == "via-admin" and "hash" not in announced["data"]
            assert (await c.get("/admin/v1/keys", headers=h)).status_code == 403

        # Rotation with a short grace: both keys work, then only the new one.
        rotated = await run_cli(
            "keys", "rotate", key_id, "--grace", "3s", "--store", demo.stores["keys"]
        )
        new_key = rotated["key"]
        assert (await c.get("/api/v1/models", headers={"X-API-Key": new_key})).status_code == 200
        assert (await c.get("/api/v1/models", headers=h)).status_code == 200
        await _until_status(c, key, 401, within=10)
        assert (await c.get("/api/v1/models", headers={"X-API-Key": new_key})).status_code == 200

        # Revocation: 401 within the server's key cache time.
        await run_cli("keys", "revoke", rotated["id"], "--store", demo.stores["keys"])
        await _until_status(c, new_key, 401, within=10)

    # Every one of those calls is in the audit trail.
    await anyio.sleep(0.6)  # the audit writer flushes every 0.2 s
    audit = demo.stores["audit"]
    old = await run_cli("audit", "query", "--store", audit, "--key", key_id, "--limit", "500")
    routes = {(r["method"], r["route"], r["status"]) for r in old["records"]}
    for expected in [
        ("GET", "/api/v1/projects", 200),
        ("POST", "/api/v1/jobs", 201),
        ("GET", "/api/v1/jobs/{id:int}/events", 200),
        ("GET", "/api/v1/tools/{tool_id}/{path:path}", 200),
        ("POST", "/api/v1/tools/{tool_id}/{path:path}", 202),
    ]:
        assert expected in routes, expected
    replays = [r for r in old["records"] if r["route"] == "/api/v1/jobs"]
    assert {r["idempotency"] for r in replays} == {"stored", "replayed"}
    limited = await run_cli(
        "audit", "query", "--store", audit, "--key", small["id"], "--status", "429"
    )
    assert limited["records"] and limited["records"][0]["rejection"]
    newer = await run_cli("audit", "query", "--store", audit, "--key", rotated["id"])
    assert any(r["status"] == 200 for r in newer["records"])
    rejected = await run_cli(
        "audit", "query", "--store", audit, "--status", "401", "--limit", "500"
    )
    assert len(rejected["records"]) >= 3  # no key, the expired old key, the revoked new key


INTERNAL_TRICKS = [
    ("GET", "/internal/users"),
    ("GET", "/internal/billing"),
    ("POST", "/internal/maintenance/reindex"),
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/billing"),
    ("GET", "/api/v1/internal/users"),
    ("GET", "/api/v1/../../internal/users"),
    ("GET", "/api/v1/projects/../../../internal/billing"),
    ("GET", "/api/v1/%2e%2e/%2e%2e/internal/users"),
    ("GET", "/api/v1/projects/1/..%2f..%2f..%2finternal%2fusers"),
    ("GET", "//internal/users"),
    ("GET", "/API/v1/../internal/users"),
    ("GET", "/api/v1/./../internal/billing"),
    ("GET", "/api/v1/projects;/../../internal/users"),
    ("GET", "/api/v1/tools/renderfarm/..%2f..%2finternal%2fusers"),
    ("GET", "/api/v1/tools/..%2f..%2finternal/users"),
    ("GET", "/api/v2/../internal/users"),
    ("POST", "/api/v1/jobs/../../internal/maintenance/reindex"),
    ("GET", "http://127.0.0.1/internal/users"),
]


@pytest.mark.anyio
async def test_internal_only_endpoints_unreachable_through_path_tricks(demo: DemoServer) -> None:
    """Case Z2: no path trick, method override or absolute-form target reaches users, billing or
    maintenance, even with a key holding every scope."""
    partner = await _create_key(demo, "prober")
    headers = {"X-API-Key": partner["key"], "X-HTTP-Method-Override": "GET"}
    with sqlite3.connect(demo.data_dir / "studio.db") as db:
        email = db.execute("SELECT email FROM users").fetchone()[0].encode()
    async with httpx.AsyncClient(base_url=demo.url) as c:
        doc = (await c.get("/api/v1/openapi.json")).json()
    assert doc["paths"] and not [p for p in doc["paths"] if not p.startswith("/api/v1/")]
    assert not [p for p in doc["paths"] if any(w in p for w in ("user", "billing", "maint"))]
    for method, target in INTERNAL_TRICKS:
        status, body = await anyio.to_thread.run_sync(
            raw_request, demo.url, method, target, headers
        )
        assert status in (400, 404, 405), (target, status)
        assert email not in body and b"mrr_cents" not in body and b"reindexed" not in body


def test_demo_refuses_workers_without_redis(tmp_path: Path) -> None:
    """``--workers 2`` without Redis exits with a clear message instead of starting."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "extapi_kit.cli", "demo", "--workers", "2", "--data-dir",
         str(tmp_path / "d")],
        capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")},
    )  # fmt: skip
    assert out.returncode == 1
    assert "--workers N needs Redis" in out.stderr
