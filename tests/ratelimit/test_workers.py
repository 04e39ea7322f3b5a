"""Detecting several worker processes (L3)."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from extapi_kit.ratelimit import detect_workers
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("environ", "argv", "expected"),
    [
        ({}, ["uvicorn", "app:app"], 1),
        ({"WEB_CONCURRENCY": "4"}, [], 4),
        ({"WEB_CONCURRENCY": "1"}, [], 1),
        ({"WEB_CONCURRENCY": "many"}, [], 1),
        ({}, ["uvicorn", "app:app", "--workers", "3"], 3),
        ({}, ["gunicorn", "-w", "5", "app:app"], 5),
        ({}, ["uvicorn", "--workers=2"], 2),
        ({}, ["uvicorn", "--workers"], 1),
    ],
)
def test_detect_workers_from_env_and_argv(
    environ: dict[str, str], argv: list[str], expected: int
) -> None:
    """WEB_CONCURRENCY and --workers/-w are read; garbage and 1 mean a single process."""
    count, reason = detect_workers(environ, argv)
    assert count == expected
    assert bool(reason) == (expected > 1)


def _child(queue: multiprocessing.Queue[int]) -> None:
    queue.put(detect_workers(argv=[])[0])


def test_detect_workers_in_multiprocessing_child() -> None:
    """A multiprocessing child (how uvicorn runs workers) counts as one of several."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(30)
    assert queue.get(timeout=5) == 2


@pytest.mark.slow
def test_uvicorn_workers_with_memory_storage_warn_loudly() -> None:
    """Under ``uvicorn --workers 2`` each worker warns that memory limits multiply (L3)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.ratelimit.workers_app:app",
            "--workers",
            "2",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-proxy-headers",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert err.decode().count("N x the limit") == 2
