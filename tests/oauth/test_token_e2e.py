"""Client credentials end to end under ``uvicorn --workers 2`` on Redis: token, call, the key's
rate limit, revoke, refused everywhere within a second; audit says key or token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from extapi_kit.keys.service import KeyService
from tests.keys.support import cheap_hasher
from tests.support.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Platform:
    url: str
    audit_db: Path
    log: Path

    def audit_rows(self) -> list[dict[str, object]]:
        if not self.audit_db.exists():
            return []
        conn = sqlite3.connect(self.audit_db, timeout=5)
        try:
            return [json.loads(r[0]) for r in conn.execute("SELECT data FROM audit_records")]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@pytest.fixture
def platform(tmp_path: Path, redis_url: str) -> Iterator[Platform]:
    port = free_port()
    audit_db, log = tmp_path / "audit.db", tmp_path / "server.log"
    env = {
        **os.environ,
        "EXTAPI_TOK_REDIS": redis_url,
        "EXTAPI_TOK_AUDIT": str(audit_db),
        "EXTAPI_TOK_READ": "6/minute",
    }
    cmd = [sys.executable, "-m", "uvicorn", "tests.oauth.token_server:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--lifespan", "on", "--no-proxy-headers", "--no-access-log"]
    cmd += ["--log-level", "warning", "--workers", "2"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_listening(port, proc)
        yield Platform(f"http://127.0.0.1:{port}", audit_db, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # our own session: the server and its workers
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def _token(url: str, key_id: str, key: str, scope: str | None = None) -> dict[str, object]:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        r = await c.post("/oauth/token", data=form, auth=(key_id, key))
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def _fresh(
    url: str, headers: dict[str, str], path: str = "/api/v1/items/1"
) -> httpx.Response:
    """One request on a new connection (so the kernel may hand it to either worker)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        return await c.get(path, headers=headers)


async def _both_workers_accept(url: str, headers: dict[str, str]) -> None:
    pids: set[str] = set()
    async with asyncio.timeout(30):
        while len(pids) < 2:
            batch = await asyncio.gather(*(_fresh(url, headers) for _ in range(6)))
            for r in batch:
                assert r.status_code == 200, r.text
                pids.add(r.headers["x-worker-pid"])


async def test_revoked_keys_tokens_refused_by_both_workers_within_a_second(
    platform: Platform, redis_url: str
) -> None:
    """O15: a token verified and cached by both workers (keys cached 30 s) is refused by both
    within 1 s of revoking its key, through the key store's revocation stream."""
    svc = KeyService(redis_url, hasher=cheap_hasher())
    try:
        # Its own budget: 6 reads a minute would not cover the warm-up, so a generous key.
        record, key = await svc.create(
            "partner", scopes=["items:read"], rate_limits={"read": "1000/minute"}
        )
        issued = await _token(platform.url, record.id, key)
        headers = {"Authorization": f"Bearer {issued['access_token']}"}
        await _both_workers_accept(platform.url, headers)
        await svc.revoke(record.id)
        revoked_at = time.monotonic()
        refused: set[str] = set()
        async with asyncio.timeout(10):
            while len(refused) < 2:
                r = await _fresh(platform.url, headers)
                if r.status_code == 401:
                    refused.add(r.headers["x-worker-pid"])
                else:
                    assert time.monotonic() - revoked_at < 1.0, "a worker still serves it after 1 s"
    finally:
        await svc.aclose()


async def test_client_credentials_end_to_end(platform: Platform, redis_url: str) -> None:
    """O20: a partner gets a token with its key, calls with it, shares the key's rate budget
    (6/minute across key and token calls), and after the key is revoked both are refused with
    the same 401 and no new token is issued. Audit records say key or token, with the jti."""
    svc = KeyService(redis_url, hasher=cheap_hasher())
    try:
        record, key = await svc.create("partner", scopes=["items:read", "orders:write"])
        issued = await _token(platform.url, record.id, key, scope="items:read")
        assert issued["token_type"] in ("Bearer", "bearer")
        assert issued["scope"] == "items:read"
        token_headers = {"Authorization": f"Bearer {issued['access_token']}"}
        key_headers = {"X-API-Key": key}
        statuses = []
        for headers in [key_headers, token_headers] * 5:
            statuses.append((await _fresh(platform.url, headers)).status_code)
        assert statuses.count(200) == 6, statuses  # one budget for the key and its tokens
        assert statuses.count(429) == 4, statuses
        await svc.revoke(record.id)
        async with asyncio.timeout(10):
            while (await _fresh(platform.url, token_headers)).status_code != 401:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        by_token = await _fresh(platform.url, token_headers)
        by_key = await _fresh(platform.url, key_headers)
        assert by_token.status_code == by_key.status_code == 401
        assert by_token.content == by_key.content
        async with httpx.AsyncClient(base_url=platform.url, timeout=10) as c:
            r = await c.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(record.id, key)
            )
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"
        rows: list[dict[str, object]] = []
        async with asyncio.timeout(20):
            while sum(1 for r in rows if r.get("route") == "/api/v1/items/{id}") < 12:
                await asyncio.sleep(0.1)
                rows = platform.audit_rows()
        calls = [r for r in rows if r.get("route") == "/api/v1/items/{id}" and r["status"] == 200]
        assert {(r["auth"], r["key_id"]) for r in calls} == {
            ("key", record.id),
            ("token", record.id),
        }
        assert {r["token_id"] for r in calls if r["auth"] == "token"} == {
            issued.get("jti") or _jti(str(issued["access_token"]))
        }
        assert all(str(issued["access_token"]) not in json.dumps(r) for r in rows)
    finally:
        await svc.aclose()


def _jti(token: str) -> str:
    import base64

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


async def test_studio_example_offers_client_credentials(redis_url: str, tmp_path: Path) -> None:
    """O20: the example platform (``extapi-kit demo --redis --workers 2``) end to end: a partner
    key made with the CLI gets a token at /oauth/token, calls the API with it, shares the key's
    read budget (4/minute across key and token calls), and once the key is revoked with the CLI
    the token is refused like the key."""
    from tests.e2e._demo import run_cli, start_demo

    demo = start_demo(tmp_path / "data", "--redis", redis_url, "--workers", "2",
        "--rate-strategy", "moving-window",
    )  # fmt: skip
    try:
        store = demo.stores["keys"]
        made = await run_cli(
            "keys", "create", "--store", store, "--name", "partner", "--scopes", "projects:read",
            "--rate-limit", "read=4/minute",
        )  # fmt: skip
        key_id, key = str(made["id"]), str(made["key"])
        issued = await _token(demo.url, key_id, key)
        token_headers = {"Authorization": f"Bearer {issued['access_token']}"}
        key_headers = {"X-API-Key": key}
        statuses = [
            (await _fresh(demo.url, headers, "/api/v1/projects")).status_code
            for headers in [token_headers, key_headers] * 4
        ]
        assert statuses[:4] == [200, 200, 200, 200], statuses
        assert statuses[4:] == [429, 429, 429, 429], statuses
        await run_cli("keys", "revoke", key_id, "--store", store)
        async with asyncio.timeout(10):
            while True:
                r = await _fresh(demo.url, token_headers, "/api/v1/projects")
                if r.status_code == 401:
                    break
                await asyncio.sleep(0.05)
        by_key = await _fresh(demo.url, key_headers, "/api/v1/projects")
        assert by_key.status_code == 401
        assert r.content == by_key.content
    finally:
        demo.stop()
