"""In-process driver: every stack called directly as an ASGI app, side by side, in one run.

No server and no network: each request is a fresh scope with ``receive``/``send`` that behave like
a server's (the body once, then nothing until the response is complete, then a disconnect), so the
figures are the stacks' own cost on the request path. Between requests the loop runs its other
tasks, untimed (the audit writer's batches, say); the loopback suite counts everything.

Stacks are interleaved in rounds (and their order rotates), so machine drift and other processes'
load hit all of them alike. Each (stack, method) cell runs up to ``BENCH_REQUESTS`` requests or
``BENCH_CELL_MS`` ms per round, over ``BENCH_ROUNDS`` rounds; every request is timed, giving the
median and p99, and ``added_us`` = median minus bare Starlette's.

``python -m bench.inprocess [stack ...]`` runs it alone and prints the rows.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import sys
import time
from typing import Any

from bench.stacks import (
    BODY,
    PING_FLOOR,
    BenchEnv,
    Stack,
    Unavailable,
    build_stack,
    redis_env,
    stack_names,
)
from extapi_kit._types import Message, Scope

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "500"))
CELL_NS = int(float(os.environ.get("BENCH_CELL_MS", "80")) * 1_000_000)
WARMUP = 200
TARGETS_US = {
    "extapi full stack (memory)": 60.0,
    "extapi full stack (redis)": 120.0,
    "extapi full stack (redis, leases of 20)": 120.0,
}
PEER_STACK = "peer stack (memory)"
OURS_REDIS = "extapi full stack (redis"  # the default path, and with local leases
_DISCONNECT: Message = {"type": "http.disconnect"}


class Exchange:
    """One request's ``receive`` and ``send``, as a server provides them.

    Args:
        body: the request body.
    """

    __slots__ = ("body", "done", "status", "waiter")

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body
        self.done = False
        self.status = 0
        self.waiter: asyncio.Future[None] | None = None

    async def receive(self) -> Message:
        """The body once; afterwards wait for the response to finish, then a disconnect."""
        body = self.body
        if body is not None:
            self.body = None
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.done:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return dict(_DISCONNECT)

    async def send(self, message: Message) -> None:
        """Record the status; mark the exchange done on the last body message.

        Args:
            message: the ASGI message.
        """
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.done = True
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)


def scope_template(path: str, method: str, headers: tuple[tuple[bytes, bytes], ...]) -> Scope:
    """An ``http`` scope as uvicorn builds it (copy it per request).

    Args:
        path: the request path.
        method: ``GET`` or ``POST`` (POST carries the 1 KB JSON body headers).
        headers: extra request headers (the API key).
    """
    hdrs = [(b"host", b"bench.local"), (b"user-agent", b"bench"), *headers]
    if method == "POST":
        hdrs += [(b"content-type", b"application/json"), (b"content-length", b"1024")]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("203.0.113.7", 40000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": hdrs,
        "state": {},
    }


async def call(app: Any, template: Scope, body: bytes) -> int:
    """Send one request through ``app``; return the response status.

    Args:
        app: the ASGI app.
        template: the scope to copy.
        body: the request body.
    """
    scope = dict(template)
    scope["headers"] = list(template["headers"])
    scope["state"] = {}
    ex = Exchange(body)
    await app(scope, ex.receive, ex.send)
    return ex.status


class Cell:
    """One (stack, method): its scope, body and samples.

    Args:
        stack: the stack.
        method: ``GET`` or ``POST``.
    """

    def __init__(self, stack: Stack, method: str) -> None:
        self.stack = stack
        self.method = method
        path = stack.get_path if method == "GET" else stack.post_path
        self.template = scope_template(path, method, stack.headers)
        self.body = BODY if method == "POST" else b""
        self.samples: list[int] = []
        self.errors = 0

    async def round(self) -> None:
        """Run one round: up to REQUESTS requests or CELL_NS, each timed."""
        app, template, body, samples = self.stack.app, self.template, self.body, self.samples
        clock = time.perf_counter_ns
        deadline = clock() + CELL_NS
        for _ in range(REQUESTS):
            t0 = clock()
            status = await call(app, template, body)
            t1 = clock()
            samples.append(t1 - t0)
            if status != 200:
                self.errors += 1
            # Untimed: let background tasks run between requests, as a server's loop does
            # (the audit writer flushes here, off the request path).
            await asyncio.sleep(0)
            if t1 > deadline:
                break


def _pct(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000


async def _build_all(names: list[str], env: BenchEnv) -> tuple[list[Stack], list[dict[str, Any]]]:
    stacks, skipped = [], []
    for name in names:
        try:
            stacks.append(await build_stack(name, env))
        except Unavailable as exc:
            skipped.append({"name": name, "skipped": str(exc)})
    return stacks, skipped


async def _warm(cell: Cell) -> None:
    for _ in range(WARMUP):
        status = await call(cell.stack.app, cell.template, cell.body)
        await asyncio.sleep(0)
    if status != 200:
        raise RuntimeError(f"{cell.stack.name} {cell.method} answered {status}, not 200")


async def measure(names: list[str], env: BenchEnv) -> list[dict[str, Any]]:
    """Build the named stacks, run the rounds, return one row per (stack, method).

    Args:
        names: stack names (``starlette`` first: it is the baseline).
        env: what the builders may use.
    """
    stacks, rows = await _build_all(names, env)
    try:
        cells = [Cell(s, m) for s in stacks for m in ("GET", "POST")]
        for cell in cells:
            await _warm(cell)
        for r in range(ROUNDS if cells else 0):
            shift = r % len(cells)
            for cell in cells[shift:] + cells[:shift]:
                await cell.round()
    finally:
        for stack in stacks:
            await stack.aclose()
    return _rows(cells) + rows


def _rows(cells: list[Cell]) -> list[dict[str, Any]]:
    base: dict[str, float] = {}
    peer: dict[str, float] = {}
    redis_peer: dict[str, float] = {}
    out = []
    for cell in cells:
        ordered = sorted(cell.samples)
        median = statistics.median(ordered) / 1000
        row: dict[str, Any] = {
            "name": f"{cell.stack.name} {cell.method}",
            "median_us": median,
            "p99_us": _pct(ordered, 0.99),
            "n": len(ordered),
            "errors": cell.errors,
        }
        if cell.stack.name == "starlette":
            base[cell.method] = median
        out.append(row)
    for row, cell in zip(out, cells, strict=True):
        if cell.method in base:
            row["added_us"] = row["median_us"] - base[cell.method]
        if cell.stack.name == PEER_STACK:
            peer[cell.method] = row["added_us"]
        elif cell.stack.name.endswith("(redis)") and not cell.stack.name.startswith(OURS_REDIS):
            # Issue 16: ours on Redis against the fastest Redis peer of the same run.
            fastest = redis_peer.get(cell.method)
            if "added_us" in row and (fastest is None or row["added_us"] < fastest):
                redis_peer[cell.method] = row["added_us"]
    for row, cell in zip(out, cells, strict=True):
        target = TARGETS_US.get(cell.stack.name)
        if target is not None:
            row["target_us"] = target
            row["met"] = "yes" if row.get("added_us", target + 1) <= target else "no"
            if cell.stack.name.startswith(OURS_REDIS):
                if cell.method in redis_peer and row.get("added_us", 0) > 0:
                    row["x_less_than_fastest_redis_peer"] = (
                        redis_peer[cell.method] / row["added_us"]
                    )
            elif cell.method in peer and row.get("added_us", 0) > 0:
                row["x_less_than_peer_stack"] = peer[cell.method] / row["added_us"]
    return out


def run(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the in-process comparison over every stack (peers when installed).

    Args:
        names: stack names to run; default every stack.
    """
    # By default the raw-PING floor runs beside the stacks: what one Redis round trip costs alone.
    selected = names or [*stack_names(), PING_FLOOR]
    if "starlette" in selected:
        selected = ["starlette", *[n for n in selected if n != "starlette"]]
    try:  # the loop production runs under uvicorn[standard], when installed
        factory: Any = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        factory = None
    with redis_env() as env, asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(measure(selected, env))


if __name__ == "__main__":
    for result in run(sys.argv[1:] or None):
        print(result)
