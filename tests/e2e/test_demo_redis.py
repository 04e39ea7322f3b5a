"""End to end on Redis: ``extapi-kit demo --redis URL --workers 2`` shares every state."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import standardwebhooks

from tests.e2e._demo import run_cli, start_demo
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.redis

SCOPES = "projects:read,assets:write,jobs:read,jobs:write,models:read"


@asynccontextmanager
async def _fresh_connections(url: str) -> AsyncIterator[httpx.AsyncClient]:
    # No keep-alive: every request is a new connection, accepted by either worker.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as client:
        yield client


@pytest.mark.anyio
async def test_two_workers_share_keys_limits_idempotency_webhooks_and_audit(
    redis_url: str, tmp_path: Path
) -> None:
    """Two workers on one Redis: CLI keys, cursors, one job per Idempotency-Key, one signed
    job.completed, one shared write budget, revocation everywhere, audit queryable."""
    demo = start_demo(tmp_path / "data", "--redis", redis_url, "--workers", "2",
        "--rate-strategy", "moving-window",
    )  # fmt: skip
    try:
        store = demo.stores["keys"]
        key = await run_cli("keys", "create", "--store", store, "--name", "p", "--scopes", SCOPES)
        small = await run_cli(
            "keys", "create", "--store", store, "--name", "s", "--scopes", SCOPES,
            "--rate-limit", "write=2/2seconds",
        )  # fmt: skip
        h = {"X-API-Key": key["key"]}
        recorder = Recorder()
        async with serve(recorder) as hook_url, _fresh_connections(demo.url) as c:
            pids = {(await c.get("/health")).json()["pid"] for _ in range(12)}
            ep = await run_cli(
                "webhooks", "add", f"{hook_url}/h", "--store", demo.stores["webhooks"],
                "--events", "job.completed", "--allow-loopback",
            )  # fmt: skip

            ids: list[int] = []
            cursor = None
            while True:
                params = {"limit": 6, **({"cursor": cursor} if cursor else {})}
                page = (await c.get("/api/v1/projects", params=params, headers=h)).json()
                ids += [p["id"] for p in page["data"]]
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    break
            assert sorted(ids) == list(range(1, 31))

            await anyio.sleep(1.2)  # both dispatchers' endpoint caches see the new endpoint
            body = {"project_id": 4, "model": "flux", "prompt": f"owl {time.time()}"}
            wh = {**h, "Idempotency-Key": "owl-1"}
            answers = [await c.post("/api/v1/jobs", json=body, headers=wh) for _ in range(3)]
            assert {r.status_code for r in answers} == {201}
            assert len({r.json()["id"] for r in answers}) == 1
            job_id = answers[0].json()["id"]
            with sqlite3.connect(demo.data_dir / "studio.db") as db:
                rows = db.execute("SELECT COUNT(*) FROM jobs WHERE prompt = ?", (body["prompt"],))
                assert rows.fetchone()[0] == 1

            await recorder.wait_for(1, within=15)
            await anyio.sleep(1.0)  # a duplicate from the other worker would arrive by now
            completed = [
                standardwebhooks.Webhook(ep["secret"]).verify(r.body, r.headers)
                for r in recorder.requests
            ]
            assert [e["data"]["id"] for e in completed] == [job_id]

            sh = {"X-API-Key": small["key"]}
            writes = [(await c.post("/api/v1/assets/2/approve", headers=sh)) for _ in range(3)]
            assert [r.status_code for r in writes] == [200, 200, 429]

            await run_cli("keys", "revoke", key["id"], "--store", store)
            deadline = time.monotonic() + 5
            while (await c.get("/api/v1/models", headers=h)).status_code != 401:
                assert time.monotonic() < deadline
                await anyio.sleep(0.2)
            statuses = {(await c.get("/api/v1/models", headers=h)).status_code for _ in range(8)}
            assert statuses == {401}
        await anyio.sleep(0.6)
        audit = await run_cli("audit", "query", "--store", demo.stores["audit"], "--key", key["id"])
        routes = {(r["route"], r["status"]) for r in audit["records"]}
        assert {("/api/v1/projects", 200), ("/api/v1/jobs", 201)} <= routes
        assert len(pids) >= 1  # which worker accepts a connection is up to the kernel
    finally:
        demo.stop()
