"""Floor: what the full stack's structure costs under uvicorn when its layers do no work.

The memory stack of ``loopback`` is, between the server and the internal app, a chain of ASGI
layers (each one frame per request), a few ``send`` wrappers and six more response headers that
uvicorn checks and encodes in Python. This suite serves bare Starlette behind pass-through stand-ins
of that structure (``bench/stacks.py``: ``FLOOR_LAYERS`` layers, ``FLOOR_WRAPPERS`` wrappers,
``FLOOR_HEADERS`` headers of the same names and sizes), one part at a time and all together, then
the real full memory stack, each under its own uvicorn process driven like ``loopback``. Rows:
req/s, the server's CPU per request and what it added over bare Starlette.

What it answers: how much a one-pass composition (one frame and one ``send`` wrapper for the whole
stack) could save at most — the ``frames`` and ``wrappers`` rows — and how much of the stack's cost
is the layers' own work (the real stack minus the ``all`` row).
"""

from __future__ import annotations

import os
from typing import Any

from bench.layers import cpu_row
from bench.loopback import SECONDS, serve_and_measure
from bench.stacks import FLOOR_STEPS

CONNECTIONS = int(os.environ.get("BENCH_FLOOR_CONNECTIONS", "16"))
FULL_STACK = "extapi-memory"


def run(
    methods: tuple[str, ...] = ("GET",),
    seconds: float = SECONDS,
    conns: int = CONNECTIONS,
    steps: tuple[str, ...] = FLOOR_STEPS,
    full: str | None = FULL_STACK,
) -> list[dict[str, Any]]:
    """Measure bare Starlette, each stand-in of the stack's structure, and the real stack.

    Args:
        methods: the methods to drive.
        seconds: timed seconds per cell.
        conns: concurrent connections.
        steps: the stand-ins to serve (``bench.stacks.FLOOR_STEPS``).
        full: the real stack to serve last, or None.
    """
    rows: list[dict[str, Any]] = []
    for method in methods:
        bare = serve_and_measure("starlette", method, seconds, conns)
        rows.append(cpu_row("bare starlette", method, conns, bare, bare, bare))
        names = [(f"structure: {s}", f"floor:{s}") for s in steps]
        if full is not None:
            names.append(("full memory stack", full))
        for label, name in names:
            figures = serve_and_measure(name, method, seconds, conns)
            rows.append(cpu_row(label, method, conns, figures, bare, bare))
    return rows
