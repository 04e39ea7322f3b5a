"""Layers: what each middleware of the full memory stack costs under uvicorn, one layer at a time.

The stack is built up innermost first (DESIGN §3 order): the registry's router alone
(``auth=False``, no other layer), then the API-key layer, the rate limiter (in-process storage), the
body-size limit, idempotency and the audit layer (a memory sink) — the last step is the full memory
stack of the ``loopback`` suite. Every step is served by its own uvicorn subprocess (one worker,
uvloop and httptools when installed) and driven like ``loopback`` (wrk when on PATH, else the Python
client) at ``BENCH_LAYER_CONNECTIONS`` (default 16) connections. Rows: req/s, the server's CPU per
request (user + system time of the server process over the timed window; far steadier than req/s on
a shared box) and what the step added to it; bare Starlette is measured first. The CPU a step adds
is its layer's cost as a server pays it (header encoding in uvicorn included), which is what the
``loopback`` targets (≥ 70 % of bare for the memory stack) come down to.
"""

from __future__ import annotations

import os
from typing import Any

from bench.loopback import SECONDS, serve_and_measure
from bench.stacks import LAYER_STEPS

CONNECTIONS = int(os.environ.get("BENCH_LAYER_CONNECTIONS", "16"))


def run(
    methods: tuple[str, ...] = ("GET", "POST"),
    seconds: float = SECONDS,
    conns: int = CONNECTIONS,
) -> list[dict[str, Any]]:
    """Measure bare Starlette and each step of the stack; return one row per (step, method).

    Args:
        methods: the methods to drive.
        seconds: timed seconds per cell.
        conns: concurrent connections.
    """
    rows: list[dict[str, Any]] = []
    for method in methods:
        bare = serve_and_measure("starlette", method, seconds, conns)
        rows.append(cpu_row("bare starlette", method, conns, bare, bare, None))
        previous = bare
        for step in LAYER_STEPS:
            figures = serve_and_measure(f"layers:{step}", method, seconds, conns)
            label = "router" if step == "router" else f"+ {step}"
            rows.append(cpu_row(label, method, conns, figures, bare, previous))
            previous = figures
    return rows


def cpu_row(
    label: str,
    method: str,
    conns: int,
    figures: dict[str, Any],
    bare: dict[str, Any],
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """One table row: req/s and its ratio to bare, the server's CPU per request and what it added
    over ``previous`` (no ``added_cpu_us`` when ``previous`` is None).

    Args:
        label: the row's label (the method is appended).
        method: ``GET`` or ``POST``.
        conns: concurrent connections.
        figures: the measured cell.
        bare: bare Starlette's cell (the ratio's base).
        previous: the cell the added CPU is counted from, or None.
    """
    row: dict[str, Any] = {
        "name": f"{label} {method}",
        "conns": conns,
        "rps": figures["rps"],
        "rps_ratio": figures["rps"] / bare["rps"],
    }
    cpu = figures.get("cpu_us")
    if cpu is not None:
        row["cpu_us"] = cpu
        if previous is not None and previous.get("cpu_us") is not None:
            row["added_cpu_us"] = cpu - previous["cpu_us"]
    row["errors"] = figures["errors"]
    return row
