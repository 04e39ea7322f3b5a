"""Detecting several worker processes, where in-process limits would multiply (case L3).

Each worker process has its own memory: with ``uvicorn --workers 2`` and memory storage, a limit
of 50 admitted 100 requests (anchors-reliability §0.3). We cannot see every deployment, but we can
see the common signals: ``WEB_CONCURRENCY`` (uvicorn, gunicorn and most PaaS set or honour it),
``--workers``/``-w`` on the command line, and being a ``multiprocessing`` child (uvicorn's worker
processes are).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence

__all__ = ["detect_workers"]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def detect_workers(
    environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None
) -> tuple[int, str]:
    """Return ``(worker count guess, reason)``; ``(1, "")`` when nothing suggests several.

    Args:
        environ: the environment to inspect (default ``os.environ``).
        argv: the command line to inspect (default ``sys.argv``).
    """
    env = os.environ if environ is None else environ
    args = list(sys.argv if argv is None else argv)
    count = _int(env.get("WEB_CONCURRENCY"))
    if count and count > 1:
        return count, f"WEB_CONCURRENCY={count}"
    for i, arg in enumerate(args):
        value: str | None = None
        if arg in ("--workers", "-w") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        n = _int(value)
        if n and n > 1:
            return n, f"--workers {n} on the command line"
    if environ is None and multiprocessing.parent_process() is not None:
        return 2, "running in a multiprocessing child (a process manager's worker?)"
    return 1, ""
