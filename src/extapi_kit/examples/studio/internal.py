"""The internal platform API of the "studio" example: more endpoints than should ever be public.

A small creative-pipeline service: organizations, projects, assets with an approval step,
generation jobs advanced by a background worker, models, plus internal-only endpoints (users,
billing, maintenance) that the external API must never expose. Data lives in one SQLite file.
It knows nothing about API keys: identity arrives in trusted headers set by the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from extapi_kit.problems import PROBLEM_CONTENT_TYPE, PROBLEMS

__all__ = ["SCHEMA", "EventHook", "StudioDB", "create_internal_app"]

EventHook = Callable[[str, dict[str, Any]], Awaitable[None]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, internal_cost_center TEXT NOT NULL DEFAULT 'cc-000');
CREATE TABLE IF NOT EXISTS assets (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    approved INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL,
    status TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, role TEXT NOT NULL);
"""


class StudioDB:
    """A thread-safe SQLite handle (sync endpoints run in Starlette's threadpool)."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":  # created 0600 like the kit's own stores; an existing file is kept
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(SCHEMA)
        self._seed()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            cur = self._conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _seed(self) -> None:
        if self.query("SELECT 1 FROM organizations LIMIT 1"):
            return
        now = time.time()
        self.execute("INSERT INTO organizations VALUES ('acme', 'Acme Studios')")
        self.execute("INSERT INTO organizations VALUES ('globex', 'Globex Media')")
        for i in range(1, 31):
            org = "acme" if i % 3 else "globex"
            self.execute(
                "INSERT INTO projects (id, org_id, name, status, created_at) VALUES (?,?,?,?,?)",
                (i, org, f"Project {i:02d}", "active" if i % 4 else "archived", now - i * 3600),
            )
            for j in range(2):
                self.execute(
                    "INSERT INTO assets (project_id, name, kind, created_at) VALUES (?,?,?,?)",
                    (i, f"asset-{i}-{j}.png", "image", now - j),
                )
        for mid, name in (("sdxl", "Stable Diffusion XL"), ("flux", "Flux.1"), ("mj6", "Mosaic 6")):
            self.execute("INSERT INTO models VALUES (?, ?, '1.0')", (mid, name))
        self.execute("INSERT INTO users (email, role) VALUES ('root@studio.test', 'admin')")


def _not_found() -> Response:
    # The platform answers errors as RFC 9457 problems, like the gateway in front of it.
    body = PROBLEMS["not-found"].body()
    return Response(body, status_code=404, media_type=PROBLEM_CONTENT_TYPE)


def _page(request: Request, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"items": rows, "total": len(rows)}


def create_internal_app(db_path: str, *, on_event: EventHook | None = None) -> Starlette:
    """Build the internal platform app.

    Args:
        db_path: the SQLite file holding the platform's data.
        on_event: awaited with (event type, data) on domain events (job.completed, ...).
    """
    db = StudioDB(db_path)

    async def emit(kind: str, data: dict[str, Any]) -> None:
        if on_event is not None:
            await on_event(kind, data)

    def organizations(request: Request) -> JSONResponse:
        return JSONResponse(_page(request, db.query("SELECT * FROM organizations ORDER BY id")))

    def list_projects(request: Request) -> JSONResponse:
        sql, params = "SELECT * FROM projects", []
        org = request.query_params.get("org_id")
        if org:
            sql += " WHERE org_id = ?"
            params.append(org)
        rows = db.query(sql + " ORDER BY id", tuple(params))
        return JSONResponse(_page(request, rows))

    def get_project(request: Request) -> Response:
        rows = db.query("SELECT * FROM projects WHERE id = ?", (request.path_params["id"],))
        if not rows:
            return _not_found()
        return JSONResponse(rows[0])

    async def create_project(request: Request) -> JSONResponse:
        body = await request.json()
        pid = db.execute(
            "INSERT INTO projects (org_id, name, status, created_at) VALUES (?,?,?,?)",
            (body.get("org_id", "acme"), body["name"], "active", time.time()),
        )
        project = db.query("SELECT * FROM projects WHERE id = ?", (pid,))[0]
        await emit("project.created", project)
        return JSONResponse(project, status_code=201)

    def list_assets(request: Request) -> JSONResponse:
        rows = db.query(
            "SELECT * FROM assets WHERE project_id = ? ORDER BY id", (request.path_params["id"],)
        )
        return JSONResponse(_page(request, rows))

    async def approve_asset(request: Request) -> Response:
        aid = request.path_params["id"]
        if not db.query("SELECT 1 FROM assets WHERE id = ?", (aid,)):
            return _not_found()
        db.execute("UPDATE assets SET approved = 1 WHERE id = ?", (aid,))
        asset = db.query("SELECT * FROM assets WHERE id = ?", (aid,))[0]
        await emit("asset.approved", asset)
        return JSONResponse(asset)

    async def submit_job(request: Request) -> JSONResponse:
        body = await request.json()
        now = time.time()
        jid = db.execute(
            "INSERT INTO jobs (project_id, model, prompt, status, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?)",
            (body["project_id"], body["model"], body["prompt"], "queued", now, now),
        )
        return JSONResponse(db.query("SELECT * FROM jobs WHERE id = ?", (jid,))[0], status_code=201)

    def get_job(request: Request) -> Response:
        rows = db.query("SELECT * FROM jobs WHERE id = ?", (request.path_params["id"],))
        if not rows:
            return _not_found()
        return JSONResponse(rows[0])

    def list_jobs(request: Request) -> JSONResponse:
        return JSONResponse(_page(request, db.query("SELECT * FROM jobs ORDER BY id")))

    async def job_events(request: Request) -> Response:
        jid = request.path_params["id"]

        async def stream() -> AsyncIterator[bytes]:
            last = None
            for _ in range(600):
                rows = db.query("SELECT status, progress FROM jobs WHERE id = ?", (jid,))
                if not rows:
                    return
                state = (rows[0]["status"], rows[0]["progress"])
                if state != last:
                    last = state
                    yield f"event: progress\ndata: {json.dumps(rows[0])}\n\n".encode()
                if state[0] in ("completed", "failed"):
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream")

    def list_models(request: Request) -> JSONResponse:
        return JSONResponse(_page(request, db.query("SELECT * FROM models ORDER BY id")))

    async def import_model(request: Request) -> JSONResponse:
        body = await request.json()
        db.execute(
            "INSERT OR REPLACE INTO models VALUES (?, ?, ?)", (body["id"], body["name"], "1.0")
        )
        return JSONResponse(db.query("SELECT * FROM models WHERE id = ?", (body["id"],))[0], 201)

    # Internal-only: never exposed by the external API.
    def users(request: Request) -> JSONResponse:
        return JSONResponse(_page(request, db.query("SELECT * FROM users")))

    def billing(request: Request) -> JSONResponse:
        return JSONResponse({"mrr_cents": 4_200_000, "cost_centers": ["cc-000", "cc-001"]})

    def maintenance(request: Request) -> JSONResponse:
        return JSONResponse({"reindexed": True})

    async def worker() -> None:
        # Advance jobs: queued -> running (progress 0..100) -> completed; prompts with "fail" fail.
        while True:
            await asyncio.sleep(0.05)
            for job in db.query("SELECT * FROM jobs WHERE status IN ('queued', 'running')"):
                now = time.time()
                if job["status"] == "queued":
                    db.execute(
                        "UPDATE jobs SET status='running', updated_at=? WHERE id=?",
                        (now, job["id"]),
                    )
                    continue
                progress = min(100, job["progress"] + 25)
                status = "running"
                if progress >= 100:
                    status = "failed" if "fail" in job["prompt"] else "completed"
                db.execute(
                    "UPDATE jobs SET progress=?, status=?, updated_at=? WHERE id=?",
                    (progress, status, now, job["id"]),
                )
                if status != "running":
                    done = db.query("SELECT * FROM jobs WHERE id = ?", (job["id"],))[0]
                    await emit(f"job.{status}", done)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(worker())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            db.close()

    routes = [
        Route("/internal/organizations", organizations),
        Route("/internal/projects", list_projects),
        Route("/internal/projects", create_project, methods=["POST"]),
        Route("/internal/projects/{id:int}", get_project),
        Route("/internal/projects/{id:int}/assets", list_assets),
        Route("/internal/assets/{id:int}/approve", approve_asset, methods=["POST"]),
        Route("/internal/jobs", list_jobs),
        Route("/internal/jobs", submit_job, methods=["POST"]),
        Route("/internal/jobs/{id:int}", get_job),
        Route("/internal/jobs/{id:int}/events", job_events),
        Route("/internal/models", list_models),
        Route("/internal/models/import", import_model, methods=["POST"]),
        Route("/internal/users", users),
        Route("/internal/billing", billing),
        Route("/internal/maintenance/reindex", maintenance, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.db = db
    return app
