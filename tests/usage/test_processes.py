"""Two OS processes counting and charging quotas through one Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from extapi_kit.testing import FakeClock
from extapi_kit.usage import UsageTracker
from tests.usage.support import MID_NOVEMBER

ROOT = Path(__file__).resolve().parents[2]


def _run_workers(redis_url: str, n: int, quota: int) -> list[dict[str, int]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.usage.worker_proc", redis_url, str(n), str(quota)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"worker hung: {err.decode()[-2000:]}")
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


@pytest.mark.redis
@pytest.mark.anyio
async def test_two_processes_count_exactly_and_share_one_quota(redis_url: str) -> None:
    """Two processes x 300 requests: exact counts, and a quota of 250 admits exactly 250 (L1)."""
    n, quota = 300, 250
    results = await anyio.to_thread.run_sync(_run_workers, redis_url, n, quota)
    assert all(set(r) <= {"200", "429"} for r in results), results
    admitted = sum(r.get("200", 0) for r in results)
    refused = sum(r.get("429", 0) for r in results)
    assert (admitted, refused) == (quota, 2 * n - quota)
    tracker = UsageTracker(redis_url, clock=FakeClock(MID_NOVEMBER))
    try:
        today = (await tracker.get_usage("shared", days=1))[0]
        assert today["read"] == 2 * n
        assert today["served"] == quota
        assert today["rejected"] == {"quota-exhausted": 2 * n - quota}
        assert (await tracker.get_owner_month("acme"))["total"] == 2 * n
        assert (await tracker.quota_used("shared"))["monthly"] == quota
    finally:
        await tracker.aclose()
