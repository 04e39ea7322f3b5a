"""Loopback: each stack under uvicorn (one worker) on 127.0.0.1, driven by a load generator.

Every stack runs in its own ``python -m bench.loopback --serve NAME`` subprocess (uvicorn, one
worker, ``proxy_headers=False``, ``access_log=False``, uvloop/httptools when installed), bound to
a free port. The load comes from ``wrk`` when it is on PATH (one thread, each connection count
of ``BENCH_CONNECTIONS`` (default ``16,64``) in turn, ``BENCH_SECONDS`` seconds per cell), else
(or with ``BENCH_LOADGEN=python``) from the bounded Python client in this module (asyncio
streams, keep-alive, one request in flight per connection). Rows: req/s, p50/p99 latency and the
ratios to bare Starlette at the same connection count, which is measured first and again last in
the same run (the mean is the baseline; the drift is reported); for a stack whose rate limiter
uses the auto-pipelined Redis connection, the Redis round trips per request and the mean batch
size (read from the server through ``GET /__bench/redis``). Every server freezes its startup heap
(``gc.freeze()``, as docs/deployment.md recommends) unless ``BENCH_GC_FREEZE=0``.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from bench.stacks import (
    BODY,
    BenchEnv,
    Unavailable,
    build_stack,
    redis_batches,
    redis_env,
    stack_names,
)
from extapi_kit._types import ASGIApp, Receive, Scope, Send

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONNECTION_COUNTS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "16,64").split(",")]
CONNECTIONS = CONNECTION_COUNTS[0]
STATS_PATH = "/__bench/redis"
GC_FREEZE = os.environ.get("BENCH_GC_FREEZE", "1") != "0"
TARGETS = {"extapi full stack (memory)": 0.70, "extapi full stack (redis)": 0.50}
# Redis round trips per request at 64 connections (issue 16: coalesced decisions).
RT_TARGET = 0.25


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    m = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no {label} line in wrk output:\n{text}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    """Read req/s, p50/p99 (ms) and the non-2xx/socket error count from ``wrk --latency`` output.

    Args:
        text: wrk's standard output.
    """
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    count = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    return {
        "rps": float(rps.group(1)),
        "requests": int(count.group(1)) if count else 0,
        "p50_ms": _wrk_ms(text, "50%"),
        "p99_ms": _wrk_ms(text, "99%"),
        "errors": errors,
    }


def run_wrk(
    url: str, method: str, headers: dict[str, str], body: bytes, conns: int, seconds: float
) -> dict[str, Any]:
    """Drive ``url`` with wrk (one thread) and return :func:`parse_wrk`'s figures.

    Args:
        url: the endpoint.
        method: ``GET`` or ``POST``.
        headers: request headers.
        body: the POST body.
        conns: concurrent connections.
        seconds: run length.
    """
    args = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if method != "GET":
            script.write(f'wrk.method = "{method}"\nwrk.body = [[{body.decode()}]]\n')
            script.flush()
            args += ["-s", script.name]
        done = subprocess.run(
            [*args, url], capture_output=True, text=True, timeout=seconds + 30, check=True
        )
    return parse_wrk(done.stdout)


async def _connection(
    port: int, request: bytes, stop_at: float, lat: list[int], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter_ns
    try:
        while time.monotonic() < stop_at:
            t0 = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if m is None:
                raise RuntimeError("response without Content-Length")
            await reader.readexactly(int(m.group(1)))
            lat.append(clock() - t0)
            if head[9:12] != b"200":
                errors.append(1)
    finally:
        writer.close()


async def drive(
    port: int,
    path: str,
    method: str,
    headers: dict[str, str],
    body: bytes,
    conns: int,
    seconds: float,
) -> dict[str, Any]:
    """The bounded Python load generator: ``conns`` keep-alive connections for ``seconds``.

    Args:
        port: the server's port on 127.0.0.1.
        path: the request path.
        method: ``GET`` or ``POST``.
        headers: request headers.
        body: the request body.
        conns: concurrent connections.
        seconds: run length.
    """
    lines = [
        f"{method} {path} HTTP/1.1",
        "host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if body:
        lines.append(f"content-length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    lat: list[int] = []
    errors: list[int] = []
    start = time.monotonic()
    tasks = [_connection(port, request, start + seconds, lat, errors) for _ in range(conns)]
    await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
    elapsed = time.monotonic() - start
    lat.sort()
    if not lat:
        raise RuntimeError("no request completed")
    return {
        "rps": len(lat) / elapsed,
        "requests": len(lat),
        "p50_ms": lat[len(lat) // 2] / 1e6,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6,
        "errors": len(errors),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(name: str, port: int, redis_url: str | None) -> None:
    import uvicorn

    stack = await build_stack(name, BenchEnv(redis_url))
    opts: dict[str, Any] = {"workers": 1, "proxy_headers": False, "access_log": False}
    server = uvicorn.Server(
        uvicorn.Config(
            _with_stats(stack.app), host="127.0.0.1", port=port, log_level="warning", **opts
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    if GC_FREEZE:
        # What docs/deployment.md recommends for every app server: the heap built at startup
        # goes to the permanent generation, so full collections under load scan only what the
        # requests keep alive. Applied to every stack alike (BENCH_GC_FREEZE=0 turns it off).
        gc.collect()
        gc.freeze()
    headers = [[k.decode(), v.decode()] for k, v in stack.headers]
    info = {"name": stack.name, "get": stack.get_path, "post": stack.post_path, "headers": headers}
    print("READY " + json.dumps(info), flush=True)
    try:
        await task
    finally:
        await stack.aclose()


def _with_stats(app: ASGIApp) -> ASGIApp:
    # One string comparison per request, for every stack alike.
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STATS_PATH:
            body = json.dumps(redis_batches(app)).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return serve


def serve_main(name: str, port: int, redis_url: str | None) -> None:
    """Serve one stack until SIGTERM/SIGINT (the subprocess entry point).

    Args:
        name: the stack name.
        port: the port to bind on 127.0.0.1.
        redis_url: the Redis the stack may use.
    """
    try:
        factory: Any = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        factory = None  # the default asyncio loop (uvicorn's choice without uvloop too)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(name, port, redis_url))


class Server:
    """A stack served by a uvicorn subprocess.

    Args:
        name: the stack name.
        env: what the stack may use.
    """

    def __init__(self, name: str, env: BenchEnv) -> None:
        self.port = _free_port()
        args = [sys.executable, "-m", "bench.loopback", "--serve", name, str(self.port)]
        if env.redis_url:
            args.append(env.redis_url)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        # The server's log (tracebacks of requests wrk cuts off at the end of a run, say) goes
        # to a file, quoted when the stack fails to start.
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=root
        )
        line = self._ready_line(timeout=30.0)
        if line.startswith("UNAVAILABLE "):
            self.stop()
            raise Unavailable(line.removeprefix("UNAVAILABLE "))
        if not line.startswith("READY "):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"stack {name} did not start: {line!r}\n{tail}")
        info = json.loads(line.removeprefix("READY "))
        self.name: str = info["name"]
        self.paths = {"GET": info["get"], "POST": info["post"]}
        self.headers: dict[str, str] = dict(info["headers"])

    def _ready_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return "timeout"
        return self.proc.stdout.readline().strip() or f"exit {self.proc.poll()}"

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's stderr (``chars`` characters).

        Args:
            chars: how much to return.
        """
        self.log.seek(0)
        return self.log.read()[-chars:]

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process used so far; None off Linux."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def url(self, method: str) -> str:
        """The URL of the GET or POST endpoint.

        Args:
            method: ``GET`` or ``POST``.
        """
        return f"http://127.0.0.1:{self.port}{self.paths[method]}"

    def check(self, method: str) -> None:
        """Fail unless one request answers 200.

        Args:
            method: ``GET`` or ``POST``.
        """
        headers = {**self.headers, "content-type": "application/json"}
        body = BODY if method == "POST" else None
        r = httpx.request(method, self.url(method), headers=headers, content=body, timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"{self.name} {method} answered {r.status_code}: {r.text[:200]}")

    def redis_batches(self) -> tuple[int, int] | None:
        """``(writes, commands)`` of the stack's pipelined Redis connection, or None."""
        got = httpx.get(f"http://127.0.0.1:{self.port}{STATS_PATH}", timeout=10).json()
        return None if got is None else (int(got[0]), int(got[1]))

    def stop(self) -> None:
        """Terminate the subprocess (we started it; nothing else is touched)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def _load(
    server: Server, method: str, seconds: float = SECONDS, conns: int = CONNECTIONS
) -> dict[str, Any]:
    headers = dict(server.headers)
    body = BODY if method == "POST" else b""
    if method == "POST":
        headers["content-type"] = "application/json"
    if os.environ.get("BENCH_LOADGEN", "wrk") == "wrk" and shutil.which("wrk"):
        return run_wrk(server.url(method), method, headers, body, conns, seconds)
    return asyncio.run(
        drive(server.port, server.paths[method], method, headers, body, conns, seconds)
    )


Cells = dict[tuple[str, int], dict[str, Any]]


def measure_cell(
    server: Server, method: str, conns: int, seconds: float = SECONDS
) -> dict[str, Any]:
    """Warm up, then load ``server`` for ``seconds``; the load figures plus the server's CPU per
    request and, for a stack on the pipelined Redis connection, its round trips per request.

    Args:
        server: the running server.
        method: ``GET`` or ``POST``.
        conns: concurrent connections.
        seconds: timed seconds.
    """
    _load(server, method, min(1.0, seconds), conns)  # warm-up
    cpu0 = server.cpu_seconds()
    rt0 = server.redis_batches()
    figures = _load(server, method, seconds, conns)
    cpu1 = server.cpu_seconds()
    rt1 = server.redis_batches()
    if cpu0 is not None and cpu1 is not None and figures["requests"]:
        # Server CPU per request: far less sensitive to other processes than req/s.
        figures["cpu_us"] = (cpu1 - cpu0) / figures["requests"] * 1e6
    if rt0 is not None and rt1 is not None and figures["requests"]:
        writes, commands = rt1[0] - rt0[0], rt1[1] - rt0[1]
        figures["redis_rt_per_req"] = writes / figures["requests"]
        figures["redis_batch"] = commands / writes if writes else 0.0
        # Below 1: some requests were decided by the fallback (deadline missed).
        figures["redis_decided"] = commands / figures["requests"]
    return figures


def serve_and_measure(name: str, method: str, seconds: float, conns: int) -> dict[str, Any]:
    """Serve one stack (no Redis) in its own uvicorn process and measure one cell of it.

    Args:
        name: the stack name.
        method: ``GET`` or ``POST``.
        seconds: timed seconds.
        conns: concurrent connections.
    """
    server = Server(name, BenchEnv(None))
    try:
        server.check(method)
        return measure_cell(server, method, conns, seconds)
    finally:
        server.stop()


def _measure_stack(name: str, env: BenchEnv) -> tuple[str, Cells]:
    server = Server(name, env)
    try:
        out: Cells = {}
        for method in ("GET", "POST"):
            server.check(method)
            for conns in CONNECTION_COUNTS:
                out[(method, conns)] = measure_cell(server, method, conns)
        return server.name, out
    finally:
        server.stop()


def run(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every stack under uvicorn and return one row per (stack, method).

    Args:
        names: stack names; default every stack (peers when installed).
    """
    selected = [n for n in (names or stack_names()) if n != "starlette"]
    rows: list[dict[str, Any]] = []
    with redis_env() as env:
        _, first = _measure_stack("starlette", env)
        results: list[tuple[str, Cells]] = []
        for name in selected:
            try:
                results.append(_measure_stack(name, env))
            except Unavailable as exc:
                rows.append({"name": name, "skipped": str(exc)})
        _, last = _measure_stack("starlette", env)
    return _rows(first, last, results) + rows


def _rows(first: Cells, last: Cells, results: list[tuple[str, Cells]]) -> list[dict[str, Any]]:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us")
    cells = list(first)
    base = {
        c: {k: (first[c][k] + last[c][k]) / 2 for k in keys if k in first[c] and k in last[c]}
        for c in cells
    }
    out: list[dict[str, Any]] = []
    for cell in cells:
        drift = abs(first[cell]["rps"] - last[cell]["rps"]) / base[cell]["rps"] * 100
        row: dict[str, Any] = {"name": f"starlette {cell[0]}", "conns": cell[1], **base[cell]}
        row.update(rps_ratio=1.0, p99_ratio=1.0, cpu_ratio=1.0, baseline_drift_pct=drift)
        row["errors"] = first[cell]["errors"] + last[cell]["errors"]
        out.append(row)
    for name, result in results:
        for cell in cells:
            r = result[cell]
            b = base[cell]
            row = {
                "name": f"{name} {cell[0]}",
                "conns": cell[1],
                **{k: r[k] for k in keys if k in r},
            }
            for k in ("redis_rt_per_req", "redis_batch", "redis_decided"):
                if k in r:
                    row[k] = r[k]
            row["rps_ratio"] = r["rps"] / b["rps"]
            row["p99_ratio"] = r["p99_ms"] / b["p99_ms"]
            if "cpu_us" in r and "cpu_us" in b:
                # The req/s ratio a CPU-bound server would reach: bare CPU per request / ours.
                row["cpu_ratio"] = b["cpu_us"] / r["cpu_us"]
            row["errors"] = r["errors"]
            if name in TARGETS:
                row["target_ratio"] = TARGETS[name]
                ok = row["rps_ratio"] >= TARGETS[name] and row["p99_ratio"] <= 2.0
                if "redis_rt_per_req" in row and cell[1] >= 64:  # issue 16: shared round trips
                    ok = ok and row["redis_rt_per_req"] <= RT_TARGET
                row["met"] = "yes" if ok else "no"
            out.append(row)
    return out


def _cli(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        name, port = argv[1], int(argv[2])
        try:
            serve_main(name, port, argv[3] if len(argv) > 3 else None)
        except Unavailable as exc:
            print(f"UNAVAILABLE {exc}", flush=True)
        return
    for row in run(argv or None):
        print(row)


if __name__ == "__main__":
    _cli(sys.argv[1:])
