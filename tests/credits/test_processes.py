"""Two OS processes spending one balance at once: exact on Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from extapi_kit.credits import CreditLedger

ROOT = Path(__file__).resolve().parents[2]
PER_PROCESS = 150  # 300 concurrent requests in all
BALANCE = 50


def _run_workers(url: str) -> list[dict[str, int]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.credits.worker_proc", url, str(PER_PROCESS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"worker hung: {err.decode()[-2000:]}")
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


@pytest.fixture(params=["sqlite", "redis", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/credits.db"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("redis_url"))


@pytest.mark.anyio
async def test_two_processes_spend_a_balance_of_50_exactly(shared_url: str) -> None:
    """K5: 300 concurrent requests from two processes on a balance of 50 admit exactly 50."""
    ledger = CreditLedger(shared_url)
    try:
        await ledger.set(BALANCE, owner="acme", actor="test")
        results = await anyio.to_thread.run_sync(_run_workers, shared_url)
        admitted = sum(r.get("200", 0) for r in results)
        refused = sum(r.get("402", 0) for r in results)
        assert all(set(r) <= {"200", "402", "store_calls"} for r in results), results
        assert (admitted, refused) == (BALANCE, 2 * PER_PROCESS - BALANCE)
        assert await ledger.balance(owner="acme") == 0
        if shared_url.startswith("redis"):
            # Spent in the rate limiter's script: the credits layer never called its store.
            assert [r["store_calls"] for r in results] == [0, 0]
    finally:
        await ledger.aclose()
