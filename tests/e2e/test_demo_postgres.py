"""End to end on PostgreSQL: ``extapi-kit demo --postgres URL --workers 2`` without Redis."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import pytest
import standardwebhooks

from tests.e2e._demo import run_cli, start_demo
from tests.e2e.test_demo_redis import SCOPES, _fresh_connections
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.postgres


@pytest.mark.anyio
async def test_two_workers_share_every_durable_store_on_postgresql(
    pg_url: str, tmp_path: Path
) -> None:
    """P10: two workers, PostgreSQL only: CLI keys on postgresql://, one job per
    Idempotency-Key, one signed job.completed (two dispatchers, SKIP LOCKED), revocation
    everywhere (LISTEN/NOTIFY), audit queryable; rate limits stay per worker (noted at start)."""
    demo = start_demo(tmp_path / "data", "--postgres", pg_url, "--workers", "2")
    try:
        assert set(demo.stores.values()) == {pg_url, "memory://"}
        assert demo.stores["rate_limit"] == "memory://"
        store = demo.stores["keys"]
        key = await run_cli("keys", "create", "--store", store, "--name", "p", "--scopes", SCOPES)
        h = {"X-API-Key": key["key"]}
        recorder = Recorder()
        async with serve(recorder) as hook_url, _fresh_connections(demo.url) as c:
            health = [(await c.get("/health")).json() for _ in range(8)]
            assert {x["backend"] for x in health} == {"postgresql"}
            ep = await run_cli(
                "webhooks", "add", f"{hook_url}/h", "--store", demo.stores["webhooks"],
                "--events", "job.completed", "--allow-loopback",
            )  # fmt: skip
            page = (await c.get("/api/v1/projects", params={"limit": 5}, headers=h)).json()
            assert len(page["data"]) == 5

            await anyio.sleep(1.2)  # both dispatchers' endpoint caches see the new endpoint
            body = {"project_id": 4, "model": "flux", "prompt": f"owl {time.time()}"}
            wh = {**h, "Idempotency-Key": "owl-pg"}
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
    finally:
        demo.stop()
