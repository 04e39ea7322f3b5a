"""Several processes write one key's activity at once, and no count is lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.analytics import KeyActivity

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "redis", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store two processes share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/activity.db"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("redis_url"))


def test_two_processes_flushing_one_key_add_up_exactly(shared_url: str) -> None:
    """Two processes x 60 flushes of 2 requests each: 240 requests and 40 addresses, exactly."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.analytics.worker_proc", shared_url, tag, "60"],
            cwd=ROOT,
        )
        for tag in ("1", "2")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    async def read() -> dict[str, Any]:
        activity = KeyActivity(shared_url)
        try:
            return await activity.get("shared")
        finally:
            await activity.aclose()

    got = asyncio.run(read())
    assert got["requests"] == 240
    assert len(got["ips"]) == 40
    assert sum(r["count"] for r in got["ips"]) == 240
