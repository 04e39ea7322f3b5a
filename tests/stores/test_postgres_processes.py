"""Two OS processes on one PostgreSQL database: key revocation, idempotency, quotas, migrations."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from extapi_kit.keys.service import KeyService
from extapi_kit.testing import FakeClock
from extapi_kit.usage import UsageTracker
from tests.keys.support import cheap_hasher
from tests.usage.support import MID_NOVEMBER
from tests.usage.test_processes import _run_workers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stores.pg_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(p: subprocess.Popen[str]) -> str:
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"worker hung: {err[-2000:]}")
    assert p.returncode == 0, err[-2000:]
    return out


@pytest.mark.anyio
async def test_revocation_reaches_another_process_within_a_second(pg_url: str) -> None:
    """A6: a key revoked in this process is refused by another process, whose positive cache
    never expires by itself, within 1 s (LISTEN/NOTIFY)."""
    svc = KeyService(pg_url, hasher=cheap_hasher())
    try:
        rec, key = await svc.create("shared")
        worker = _spawn("keys", pg_url, key)
        assert worker.stdout is not None
        line = await anyio.to_thread.run_sync(worker.stdout.readline)
        assert line.strip() == "ready", worker.stderr.read() if worker.stderr else ""
        revoked = time.time()
        await svc.revoke(rec.id)
        out = await anyio.to_thread.run_sync(_finish, worker)
    finally:
        await svc.aclose()
    refused = float(out.split()[-1])
    assert refused - revoked < 1.0, refused - revoked


def test_two_processes_one_key_one_side_effect(pg_url: str, tmp_path: Path) -> None:
    """I2: two processes each send the same 10 keys 5 times at once: each side effect runs once,
    and no request gets a 5xx."""
    effects = tmp_path / "effects.txt"
    procs = [_spawn("idem", pg_url, str(effects)) for _ in range(2)]
    statuses: Counter[str] = Counter()
    for p in procs:
        statuses.update(json.loads(_finish(p)))
    assert sum(statuses.values()) == 100
    assert all(not s.startswith("5") for s in statuses), statuses
    lines = Counter(effects.read_text().split())
    assert sorted(lines) == sorted(f'"k{n}"' for n in range(10))
    assert set(lines.values()) == {1}, lines


@pytest.mark.anyio
async def test_two_processes_share_one_quota_exactly(pg_url: str) -> None:
    """L1: two processes x 300 requests against a quota of 250 admit exactly 250, counts exact."""
    n, quota = 300, 250
    results = await anyio.to_thread.run_sync(_run_workers, pg_url, n, quota)
    assert sum(r.get("200", 0) for r in results) == quota
    assert sum(r.get("429", 0) for r in results) == 2 * n - quota
    tracker = UsageTracker(pg_url, clock=FakeClock(MID_NOVEMBER))
    try:
        assert (await tracker.get_usage("shared", days=1))[0]["read"] == 2 * n
        assert (await tracker.quota_used("shared"))["monthly"] == quota
    finally:
        await tracker.aclose()


def test_two_processes_migrate_at_once(pg_url: str) -> None:
    """Migrations run concurrently by two processes apply every version exactly once."""
    procs = [_spawn("migrate", pg_url) for _ in range(3)]
    results = [json.loads(_finish(p)) for p in procs]
    for feature in ("keys", "idempotency", "usage"):
        applied = [v for r in results for v in r[feature]]
        assert applied == [1], (feature, results)
