"""Smoke test of the benchmark harness: every stack builds and answers like the real thing.

The figures themselves belong to ``nox -s bench``; here we pin that the stacks the benchmarks
compare are what they claim (200 with the key, 401 without it where there is auth), that the
in-process driver and the loopback harness work, and that wrk's output is read correctly. Peer
stacks need packages installed only in the bench environment, so they skip here when missing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from bench import floor, inprocess, layers, loopback
from bench.peers import PEERS
from bench.stacks import (
    BODY,
    FLOOR_HEADERS,
    FLOOR_LAYERS,
    FLOOR_STEPS,
    FLOOR_WRAPPERS,
    LAYER_STEPS,
    OURS,
    PING_FLOOR,
    BenchEnv,
    Stack,
    build_stack,
    floor_headers,
)

pytestmark = pytest.mark.anyio

# The package each peer stack needs (importorskip'ed: installed only for `nox -s bench`).
PEER_PACKAGES = {
    "fastapi": "fastapi",
    "fastapi-apikeyheader": "fastapi",
    "slowapi-memory": "slowapi",
    "slowapi-redis": "slowapi",
    "fastapi-limiter-redis": "fastapi_limiter",
    "asgi-ratelimit-memory": "ratelimit",
    "asgi-ratelimit-redis": "ratelimit",
    "peer-stack": "slowapi",
    "peer-stack-redis": "slowapi",
}


async def _request(
    stack: Stack, method: str, headers: tuple[tuple[bytes, bytes], ...]
) -> httpx.Response:
    transport = httpx.ASGITransport(stack.app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        path = stack.get_path if method == "GET" else stack.post_path
        return await client.request(
            method,
            path,
            headers=[(k.decode(), v.decode()) for k, v in headers]
            + [("content-type", "application/json")],
            content=BODY if method == "POST" else None,
        )


async def _check(stack: Stack) -> None:
    try:
        get = await _request(stack, "GET", stack.headers)
        assert get.status_code == 200, get.text
        assert get.json() == {"id": 42, "name": "item", "ok": True}
        post = await _request(stack, "POST", stack.headers)
        assert post.status_code == 200, post.text
        assert post.json()["received"] == len(json.loads(BODY)["payload"])
        if stack.auth:
            assert (await _request(stack, "GET", ())).status_code == 401
            wrong = ((b"x-api-key", b"not-a-key"),)
            assert (await _request(stack, "POST", wrong)).status_code == 401
    finally:
        await stack.aclose()


def _env(name: str, request: pytest.FixtureRequest) -> BenchEnv:
    if "redis" in name:
        return BenchEnv(request.getfixturevalue("redis_url"))
    return BenchEnv(None)


def test_post_body_is_one_kilobyte() -> None:
    """The POST body every stack parses is exactly 1 KB of valid JSON."""
    assert len(BODY) == 1024
    assert json.loads(BODY)["name"] == "bench"


@pytest.mark.parametrize("name", OURS)
async def test_our_stacks_answer_200_with_key_and_401_without(
    name: str, request: pytest.FixtureRequest
) -> None:
    """Bare Starlette and our full stack (memory, Redis) serve both routes; ours needs the key."""
    stack = await build_stack(name, _env(name, request))
    assert stack.auth == (name != "starlette")
    await _check(stack)


@pytest.mark.parametrize("name", list(PEERS))
async def test_peer_stacks_answer_like_ours(name: str, request: pytest.FixtureRequest) -> None:
    """Each peer stack (when its package is installed) serves the same endpoints and auth rule."""
    pytest.importorskip(PEER_PACKAGES[name])
    stack = await build_stack(name, _env(name, request))
    await _check(stack)


async def test_inprocess_driver_rows_and_overhead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process driver times every (stack, method) cell and derives added_us and targets."""
    monkeypatch.setattr(inprocess, "ROUNDS", 2)
    monkeypatch.setattr(inprocess, "REQUESTS", 20)
    monkeypatch.setattr(inprocess, "WARMUP", 5)
    rows = await inprocess.measure(["starlette", "extapi-memory"], BenchEnv(None))
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {
        "starlette GET",
        "starlette POST",
        "extapi full stack (memory) GET",
        "extapi full stack (memory) POST",
    }
    assert all(row["errors"] == 0 and row["n"] == 40 for row in rows)
    ours = by_name["extapi full stack (memory) GET"]
    assert ours["added_us"] == ours["median_us"] - by_name["starlette GET"]["median_us"]
    assert ours["target_us"] == 60.0 and ours["met"] in ("yes", "no")


async def test_inprocess_skips_unavailable_stacks() -> None:
    """A Redis stack without a Redis is reported as skipped, not as a failure."""
    rows = await inprocess.measure(["extapi-redis"], BenchEnv(None))
    assert rows == [{"name": "extapi-redis", "skipped": rows[0]["skipped"]}]
    assert "Redis" in rows[0]["skipped"]


WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:41234/items
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  512.33us  12.01ms   90.12%
    Req/Sec     7.61k   301.22     8.02k    80.00%
  Latency Distribution
     50%  850.00us
     75%    2.21ms
     90%    2.60ms
     99%    1.20s
  37866 requests in 5.00s, 5.38MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   7573.20
Transfer/sec:      1.08MB
"""


def test_parse_wrk_units_and_errors() -> None:
    """wrk's req/s, p50/p99 in us/ms/s units and its error counts are read correctly."""
    figures: dict[str, Any] = loopback.parse_wrk(WRK_OUTPUT)
    assert figures == {
        "rps": 7573.2,
        "requests": 37866,
        "p50_ms": 0.85,
        "p99_ms": 1200.0,
        "errors": 7,
    }
    with pytest.raises(RuntimeError):
        loopback.parse_wrk("wrk: connection refused")


def test_loopback_serves_stack_and_python_loadgen_counts() -> None:
    """Our memory stack under uvicorn answers the bounded Python load generator with 200s."""
    server = loopback.Server("extapi-memory", BenchEnv(None))
    try:
        server.check("GET")
        server.check("POST")
        headers = {**server.headers, "content-type": "application/json"}
        import asyncio

        figures = asyncio.run(
            loopback.drive(server.port, server.paths["POST"], "POST", headers, BODY, 2, 0.3)
        )
    finally:
        server.stop()
    assert server.proc.poll() is not None
    assert figures["errors"] == 0 and figures["rps"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


@pytest.mark.parametrize("step", LAYER_STEPS)
async def test_layer_steps_add_one_layer_each(step: str) -> None:
    """Each step of the per-layer table is the stack up to that layer: it answers 200 with the
    key, and the layers it holds are exactly the steps so far (``router`` holds none)."""
    stack = await build_stack(f"layers:{step}", BenchEnv(None))
    held = [type(layer).__name__ for layer in _chain(stack.app)]
    classes = {
        "api_key": "ApiKeyMiddleware",
        "rate_limit": "RateLimitMiddleware",
        "body_limit": "BodySizeLimitMiddleware",
        "idempotency": "IdempotencyMiddleware",
        "audit": "AuditMiddleware",
    }
    upto = LAYER_STEPS[: LAYER_STEPS.index(step) + 1]
    assert {c for s, c in classes.items() if c in held} == {classes[s] for s in upto[1:]}
    assert stack.auth == ("api_key" in upto)
    await _check(stack)


def test_layers_suite_rows_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layers suite serves bare Starlette and each step under uvicorn and reports what each
    step added to the server's CPU per request."""
    monkeypatch.setattr(layers, "LAYER_STEPS", ("router", "api_key"))
    monkeypatch.setenv("BENCH_LOADGEN", "python")
    rows = layers.run(methods=("GET",), seconds=0.3, conns=2)
    assert [r["name"] for r in rows] == ["bare starlette GET", "router GET", "+ api_key GET"]
    assert all(r["errors"] == 0 and r["rps"] > 0 for r in rows)
    if "cpu_us" in rows[0]:  # Linux: /proc gives the server's CPU time
        assert rows[2]["added_cpu_us"] == pytest.approx(rows[2]["cpu_us"] - rows[1]["cpu_us"])


def _chain(app: Any) -> list[Any]:
    out = []
    while app is not None:
        out.append(app)
        app = getattr(app, "app", None)
    return out


def _wrapped_send(send: Any) -> Any:
    """The send a wrapper forwards to: a bound method's ``_send``, or a closure's ``send``."""
    owner = getattr(send, "__self__", None)
    if owner is not None and hasattr(owner, "_send"):
        return owner._send
    for name, cell in zip(send.__code__.co_freevars, send.__closure__ or (), strict=True):
        if name == "send":
            return cell.cell_contents
    return None


def _send_depth_probe(app: Any, depths: list[int]) -> Any:
    async def probe(scope: Any, receive: Any, send: Any) -> None:
        depth, inner = 0, _wrapped_send(send)
        while inner is not None:
            depth, inner = depth + 1, _wrapped_send(inner)
        depths.append(depth)
        await app(scope, receive, send)

    return probe


async def test_floor_stand_ins_match_the_real_stack() -> None:
    """The floor suite's stand-ins have the real memory stack's shape: as many ASGI layers between
    the server and the internal app, and the same response headers added to the app's answer."""
    real = await build_stack("extapi-memory", BenchEnv(None))
    bare = await build_stack("starlette", BenchEnv(None))
    try:
        chain = _chain(real.app)
        assert len(chain) == FLOOR_LAYERS  # resolver ... router: none is skipped or extra
        router = chain[-1]
        depths: list[int] = []
        for route in router.api.routes:
            route.app = _send_depth_probe(route.app, depths)
        ours = await _request(real, "GET", real.headers)
        theirs = await _request(bare, "GET", ())
        added = {k.lower() for k in ours.headers} - {k.lower() for k in theirs.headers}
        assert added == {k.decode() for k, _ in floor_headers()}
        assert len(added) == FLOOR_HEADERS
        # The send the internal app gets passes through this many wrappers to the server's.
        assert depths == [FLOOR_WRAPPERS]
    finally:
        await real.aclose()
        await bare.aclose()


@pytest.mark.parametrize("step", FLOOR_STEPS)
async def test_floor_steps_answer_like_bare_starlette(step: str) -> None:
    """Each stand-in serves the bare app's answers, with the stand-in headers where it adds them."""
    stack = await build_stack(f"floor:{step}", BenchEnv(None))
    resp = await _request(stack, "GET", ())
    await _check(stack)
    assert ("x-request-id" in resp.headers) == (step in ("headers", "all"))


def test_floor_suite_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The floor suite serves bare Starlette, the stand-ins and the real stack under uvicorn and
    reports what each added to the server's CPU per request over bare."""
    monkeypatch.setenv("BENCH_LOADGEN", "python")
    rows = floor.run(seconds=0.3, conns=2, steps=("frames",))
    assert [r["name"] for r in rows] == [
        "bare starlette GET",
        "structure: frames GET",
        "full memory stack GET",
    ]
    assert all(r["errors"] == 0 and r["rps"] > 0 for r in rows)
    if "cpu_us" in rows[0]:
        assert rows[0]["added_cpu_us"] == 0
        assert rows[2]["added_cpu_us"] == pytest.approx(rows[2]["cpu_us"] - rows[0]["cpu_us"])


async def test_ping_floor_stack_pays_one_redis_round_trip(redis_url: str) -> None:
    """The raw-PING floor of the in-process suite answers like bare Starlette and sends exactly one
    PING to Redis per request (counted by the server's own command statistics)."""
    import redis.asyncio as aioredis

    stack = await build_stack(PING_FLOOR, BenchEnv(redis_url))
    admin = aioredis.Redis.from_url(redis_url)
    try:
        before = (await admin.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
        for _ in range(3):
            assert (await _request(stack, "GET", ())).status_code == 200
        after = (await admin.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
        assert after - before == 3
    finally:
        await admin.aclose()
    await _check(stack)


def test_bench_commands_in_the_docs_name_real_suites_and_stacks() -> None:
    """Every ``python -m bench ...`` in the docs names suites, modules and stacks that exist, so a
    reader who copies one runs what the page describes."""
    import re
    from pathlib import Path

    from bench.__main__ import SUITES
    from bench.stacks import stack_names

    root = Path(__file__).resolve().parents[1]
    stacks = {*stack_names(), PING_FLOOR}
    pattern = re.compile(r"python -m bench(\.[a-z_0-9]+)?((?:[ ]+[a-z][a-z0-9_-]*)*)")
    seen = 0
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for module, args in pattern.findall(page.read_text()):
            seen += 1
            names = args.split()
            if not module:
                assert set(names) <= set(SUITES), f"{page.name}: {names}"
                continue
            assert (root / "bench" / f"{module[1:]}.py").is_file(), f"{page.name}: bench{module}"
            if module in (".inprocess", ".loopback"):
                assert set(names) <= stacks, f"{page.name}: bench{module} {names}"
    assert seen >= 20
