"""Worker scaling on one Redis: 1, 2 and 4 uvicorn workers, req/s and exactness (issue 16).

Each configuration starts N ``python -m bench.scaling --serve ...`` worker processes that bind
one port with ``SO_REUSEPORT`` (the kernel spreads connections over them, as with gunicorn's
``reuse_port`` or several ``uvicorn --workers``) and serve one stack: bare Starlette, or our
full stack on one private Redis (keys, rate limits, idempotency, memory audit sink) -- with or
without local leases. Every worker verifies the same two keys (created once, on Redis): one
with limits far above the load (throughput) and one with ``read`` at ``EXACT_LIMIT`` per hour
(exactness).

Per configuration and connection count (``BENCH_CONNECTIONS``, default ``16,64``): ``wrk``
req/s and p50/p99 for ``BENCH_SECONDS`` seconds (GET), the ratio to bare Starlette with as many
workers in the same run, and the Redis round trips per request (every worker's pipelined
connection: writes / requests; with leases also the lease renewals). Then the exactness burst:
``3 x EXACT_LIMIT`` concurrent GETs (64 at a time) with the exact key -- ``admitted`` must be
``EXACT_LIMIT`` without leases and at most that with leases; what leases refuse early is
``EXACT_LIMIT - admitted``, and ``after_ttl`` is what a second burst admits once the leases'
ttl has passed (their leftovers came back).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from bench.loopback import SECONDS, _free_port, drive, run_wrk
from bench.stacks import HIGH_LIMIT, redis_env, starlette_app

CONNECTION_COUNTS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "16,64").split(",")]
WORKERS = [int(n) for n in os.environ.get("BENCH_WORKERS", "1,2,4").split(",")]
EXACT_LIMIT = 200
LEASE_BLOCK = 20
LEASE_TTL = 1.0
STATS_PATH = "/__bench/stats"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------
# Worker side
# ------------------------------------------------------------------------------------------


async def _app(kind: str, redis_url: str, keys: list[str], leases: int) -> tuple[Any, Any]:
    if kind == "bare":
        return starlette_app(), None
    from argon2 import profiles

    from extapi_kit.audit.sink_memory import MemorySink
    from extapi_kit.keys.hashing import Argon2Hasher
    from extapi_kit.keys.service import KeyService
    from extapi_kit.ratelimit.leases import LeasedRedis
    from extapi_kit.routing import ExternalAPI

    service = KeyService(redis_url, hasher=Argon2Hasher(profiles.CHEAPEST))
    for key in keys:
        await service.verify(key)  # warm the positive cache
    inner = starlette_app()
    api = ExternalAPI(docs=False)
    api.expose("GET", "/items", to=inner, path="/items", scopes=["items:read"])
    app = api.build(
        key_store=service,
        rate_limit_storage=redis_url,
        rate_limit_leases=LeasedRedis(redis_url, block=leases, ttl=LEASE_TTL) if leases else None,
        audit_sink=MemorySink(maxlen=10_000),
        idempotency_store=redis_url,
        read=HIGH_LIMIT,
        write=HIGH_LIMIT,
    )
    return app, service


def _backend(app: Any) -> Any:
    layer, seen = app, set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        primary = getattr(getattr(layer, "backend", None), "primary", None)
        if primary is not None:
            return primary
        layer = getattr(layer, "app", None)
    return None


async def _serve(kind: str, port: int, redis_url: str, keys: list[str], leases: int) -> None:
    import gc

    import uvicorn

    app, service = await _app(kind, redis_url, keys, leases)
    backend = _backend(app)

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == STATS_PATH:
            stats: dict[str, Any] = {"pid": os.getpid()}
            if backend is not None and hasattr(backend, "batch_stats"):
                stats["batches"] = list(backend.batch_stats)
                stats["renewals"] = getattr(backend, "renewals", 0)
            body = json.dumps(stats).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted sockets inherit it (uvloop sets it only on sockets it creates itself): without
    # it every keep-alive response waits out the peer's delayed ACK (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        serve, log_level="warning", proxy_headers=False, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    gc.collect()
    gc.freeze()
    print("READY", flush=True)
    try:
        await task
    finally:
        if service is not None:
            await service.aclose()


def serve_main(argv: list[str]) -> None:
    """Worker entry point: ``--serve KIND PORT REDIS_URL LEASES KEY...``.

    Args:
        argv: the arguments after ``--serve``.
    """
    kind, port, redis_url, leases, *keys = argv
    try:
        factory: Any = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(kind, int(port), redis_url, keys, int(leases)))


# ------------------------------------------------------------------------------------------
# Driver side
# ------------------------------------------------------------------------------------------


class Workers:
    """N worker processes sharing one port."""

    def __init__(self, kind: str, n: int, redis_url: str, keys: list[str], leases: int = 0) -> None:
        self.port = _free_port()
        self.n = n
        self.logs = [tempfile.TemporaryFile("w+") for _ in range(n)]
        args = [sys.executable, "-m", "bench.scaling", "--serve", kind, str(self.port)]
        args += [redis_url, str(leases), *keys]
        self.procs = [
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
            for log in self.logs
        ]
        for proc, log in zip(self.procs, self.logs, strict=True):
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "READY":
                log.seek(0)
                tail = log.read()[-2000:]
                self.stop()
                raise RuntimeError(f"worker did not start: {line!r}\n{tail}")

    def url(self, path: str = "/items") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[int, dict[str, Any]]:
        """Every worker's counters (new connections until each worker has answered)."""
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(400):
            got = httpx.get(self.url(STATS_PATH), timeout=10).json()
            seen[int(got["pid"])] = got
            if len(seen) == self.n:
                return seen
        raise RuntimeError(f"only {len(seen)} of {self.n} workers answered their stats")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
        for log in self.logs:
            log.close()


def _load(workers: Workers, path: str, headers: dict[str, str], conns: int, seconds: float) -> Any:
    if os.environ.get("BENCH_LOADGEN", "wrk") == "wrk" and shutil.which("wrk"):
        return run_wrk(workers.url(path), "GET", headers, b"", conns, seconds)
    return asyncio.run(drive(workers.port, path, "GET", headers, b"", conns, seconds))


def _totals(stats: dict[int, dict[str, Any]]) -> tuple[int, int, int]:
    writes = sum(s.get("batches", [0, 0])[0] for s in stats.values())
    commands = sum(s.get("batches", [0, 0])[1] for s in stats.values())
    renewals = sum(int(s.get("renewals", 0)) for s in stats.values())
    return writes, commands, renewals


async def _burst(port: int, path: str, key: str, total: int, conns: int = 64) -> int:
    admitted = 0
    queue = list(range(total))
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:

        async def worker() -> None:
            nonlocal admitted
            while queue:
                queue.pop()
                r = await client.get(path, headers={"x-api-key": key}, timeout=30)
                if r.status_code == 200:
                    admitted += 1
                elif r.status_code != 429:
                    raise RuntimeError(f"burst answered {r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(conns)))
    return admitted


async def _keys(redis_url: str, configs: int) -> tuple[str, list[str]]:
    from argon2 import profiles

    from extapi_kit.keys.hashing import Argon2Hasher
    from extapi_kit.keys.service import KeyService

    service = KeyService(redis_url, hasher=Argon2Hasher(profiles.CHEAPEST))
    try:
        _, fast = await service.create("bench-scaling", scopes=["items:read"])
        exact = []
        for i in range(configs):
            _, key = await service.create(
                f"bench-exact-{i}",
                scopes=["items:read"],
                rate_limits={"read": f"{EXACT_LIMIT}/hour"},
            )
            exact.append(key)
        return fast, exact
    finally:
        await service.aclose()


def _measure(
    kind: str, n: int, redis_url: str, keys: list[str], leases: int = 0
) -> list[dict[str, Any]]:
    workers = Workers(kind, n, redis_url, keys, leases)
    path = "/items" if kind == "bare" else "/api/v1/items"
    headers = {} if kind == "bare" else {"x-api-key": keys[0]}
    rows: list[dict[str, Any]] = []
    try:
        for conns in CONNECTION_COUNTS:
            _load(workers, path, headers, conns, 1.0)  # warm-up
            before = _totals(workers.stats())
            figures = _load(workers, path, headers, conns, SECONDS)
            after = _totals(workers.stats())
            row: dict[str, Any] = {"workers": n, "conns": conns, **figures}
            if kind != "bare" and figures["requests"]:
                writes = after[0] - before[0]
                row["redis_rt_per_req"] = writes / figures["requests"]
                row["redis_batch"] = (after[1] - before[1]) / writes if writes else 0.0
                if leases:
                    row["lease_renewals_per_req"] = (after[2] - before[2]) / figures["requests"]
            rows.append(row)
        if kind != "bare":
            admitted = asyncio.run(_burst(workers.port, path, keys[1], 3 * EXACT_LIMIT))
            exact = f"{admitted}/{EXACT_LIMIT}"
            if leases:
                time.sleep(LEASE_TTL * 2)  # every lease's ttl passed: the leftovers came back
                more = asyncio.run(_burst(workers.port, path, keys[1], EXACT_LIMIT))
                exact += f", early refusals {EXACT_LIMIT - admitted}, after ttl +{more}"
            for row in rows:
                row["admitted"] = exact
    finally:
        workers.stop()
    return rows


def run() -> list[dict[str, Any]]:
    """Bare Starlette and our Redis stack (with and without leases) at 1, 2 and 4 workers."""
    out: list[dict[str, Any]] = []
    with redis_env() as env:
        if env.redis_url is None:
            return [{"name": "scaling", "skipped": "no Redis"}]
        configs = [("extapi redis", n, 0) for n in WORKERS]
        configs += [("extapi redis + leases", n, LEASE_BLOCK) for n in WORKERS]
        fast, exact = asyncio.run(_keys(env.redis_url, len(configs)))
        bare: dict[tuple[int, int], float] = {}
        for n in WORKERS:
            for row in _measure("bare", n, env.redis_url, []):
                bare[(n, row["conns"])] = row["rps"]
                out.append({"name": f"starlette x{n}", **row})
        for i, (name, n, leases) in enumerate(configs):
            for row in _measure("extapi", n, env.redis_url, [fast, exact[i]], leases):
                row["rps_ratio"] = row["rps"] / bare[(n, row["conns"])]
                out.append({"name": f"{name} x{n}", **row})
    keep = ("name", "workers", "conns", "rps", "p50_ms", "p99_ms", "errors", "rps_ratio")
    extra = ("redis_rt_per_req", "redis_batch", "lease_renewals_per_req", "admitted")
    return [{k: r[k] for k in (*keep, *extra) if k in r} for r in out]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve_main(sys.argv[2:])
    else:
        for r in run():
            print(r)
