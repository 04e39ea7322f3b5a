"""The auto-pipelining coalescer under faults it has not met elsewhere (L18).

``test_redis_pipeline.py`` covers a batch written to a stopped server that then dies (L8) and a
``SCRIPT FLUSH`` inside one batch (L10). Here: a server dead before the batch is written (the
client has not noticed yet), a cold pipe whose server is gone, a whole batch meeting
``NOSCRIPT`` after a flush between batches, and a server lost while the batch's re-sent
``EVAL``s are in flight. Every decision gets the configured policy within its deadline, none
hangs, and no decision is applied twice (counted on the server afterwards).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.ratelimit._result import FIXED, MOVING, HitResult
from extapi_kit.ratelimit.fallback import FailoverBackend
from extapi_kit.ratelimit.redis_pipeline import PipelinedRedisBackend
from extapi_kit.stores._resp import AutoPipeline, encode_command
from extapi_kit.testing import FakeClock
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

DEADLINE = 0.25
WINDOW = [(1_000_000, 60)]
N = 100


def failover(url: str, clock: FakeClock, mode: str = "open") -> FailoverBackend:
    pipe = AutoPipeline(url, connect_timeout=DEADLINE, deadline=DEADLINE)
    primary = PipelinedRedisBackend(pipe, MOVING, deadline=DEADLINE)
    return FailoverBackend(
        primary, MOVING, clock=clock, deadline=DEADLINE, failure_mode=mode, probe_interval=1.0
    )


def primary_of(backend: FailoverBackend) -> PipelinedRedisBackend:
    primary = backend.primary
    assert isinstance(primary, PipelinedRedisBackend)
    return primary


async def decide_all(backend: FailoverBackend, n: int, key: str) -> list[HitResult | Exception]:
    async def one() -> HitResult | Exception:
        try:
            return await backend.hit([key], WINDOW, 1)
        except StoreUnavailableError as exc:
            return exc

    return list(await asyncio.gather(*(one() for _ in range(n))))


def assert_policy(results: list[HitResult | Exception], mode: str) -> None:
    assert len(results) == N
    if mode == "open":
        assert all(isinstance(r, HitResult) and r.allowed and r.degraded for r in results)
    else:
        assert all(isinstance(r, StoreUnavailableError) for r in results)


def llen(url: str, key: str) -> int:
    sync = redis.Redis.from_url(url)
    try:
        return int(sync.llen(key))
    finally:
        sync.close()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_server_killed_before_the_batch_is_written(
    private_redis: RedisServer, mode: str
) -> None:
    """L18: Redis SIGKILLed (by its PID) before a batch of 100 leaves: the client still thinks it
    is connected, writes the batch into a dead socket, and every decision gets the policy within
    its deadline; the restarted server receives none of them."""
    clock = FakeClock(1_000_000.0)
    backend = failover(private_redis.url, clock, mode)
    pipe = primary_of(backend).pipe
    try:
        await backend.hit(["{k:warm}"], WINDOW, 1)
        batches, commands = pipe.batches, pipe.commands
        proc = private_redis.proc
        assert proc is not None

        def kill() -> None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

        async def one() -> HitResult | Exception:
            try:
                return await backend.hit(["{k:dead}"], WINDOW, 1)
            except StoreUnavailableError as exc:
                return exc

        started = time.monotonic()
        tasks = [asyncio.ensure_future(one()) for _ in range(N)]
        # Runs after the 100 callers queued their commands and before the flush they scheduled:
        # the batch is written into the socket of a server that is already gone.
        asyncio.get_running_loop().call_soon(kill)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        private_redis.proc = None
        assert time.monotonic() - started < DEADLINE + 0.2
        assert_policy(results, mode)
        assert (pipe.batches - batches, pipe.commands - commands) == (1, N)
        private_redis.start()
        clock.advance(2.0)  # past the probe interval
        for expected in range(1, 4):
            result = await backend.hit(["{k:dead}"], WINDOW, 1)
            assert (result.degraded, result.windows[0][0]) == (False, expected)
        # 100 + 3 commands and the one EVAL after the new server's NOSCRIPT: nothing replayed.
        assert pipe.commands - commands == N + 3 + 1
        assert llen(private_redis.url, "{k:dead}") == 3
    finally:
        await backend.aclose()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_cold_pipe_to_a_dead_server_decides_every_waiter_at_once(
    private_redis: RedisServer, mode: str
) -> None:
    """L18: 100 first decisions on a pipe that never connected, to a server just killed: they
    share one failed connect and all get the policy within the deadline; none is written."""
    clock = FakeClock(1_000_000.0)
    url = private_redis.url
    private_redis.kill()
    backend = failover(url, clock, mode)
    pipe = primary_of(backend).pipe
    try:
        started = time.monotonic()
        results = await asyncio.wait_for(decide_all(backend, N, "{k:cold}"), 5)
        assert time.monotonic() - started < DEADLINE + 0.2
        assert_policy(results, mode)
        assert (pipe.batches, pipe.commands) == (0, 0)
    finally:
        await backend.aclose()


async def test_noscript_for_a_whole_batch_after_a_flush_between_batches(redis_url: str) -> None:
    """L18: SCRIPT FLUSH between two batches: each of the next batch's 100 decisions meets
    NOSCRIPT, is re-sent once as EVAL (together, in one write), and counts once; the batch
    after that is back on EVALSHA."""
    backend = failover(redis_url, FakeClock(1_000_000.0))
    primary = primary_of(backend)
    pipe = primary.pipe
    try:
        await backend.hit(["{k:warm}"], WINDOW, 1)
        assert await pipe.execute(encode_command(b"SCRIPT", b"FLUSH")) == b"OK"
        batches, commands, reloads = pipe.batches, pipe.commands, primary.reloads
        results = await decide_all(backend, N, "{k:nb}")
        assert all(isinstance(r, HitResult) and not r.degraded for r in results)
        counts = sorted(int(r.windows[0][0]) for r in results if isinstance(r, HitResult))
        assert counts == list(range(1, N + 1))  # each reply to its own caller, each once
        assert primary.reloads - reloads == N
        assert (pipe.batches - batches, pipe.commands - commands) == (2, 2 * N)
        assert llen(redis_url, "{k:nb}") == N
        reloads = primary.reloads
        results = await decide_all(backend, 10, "{k:nb}")
        assert primary.reloads == reloads  # the EVALs cached the script again
        assert llen(redis_url, "{k:nb}") == N + 10
    finally:
        await backend.aclose()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_server_lost_while_the_reloaded_evals_are_in_flight(
    private_redis: RedisServer, mode: str
) -> None:
    """L18: a batch of 100 meets NOSCRIPT; while their re-sent EVALs are in flight the link
    goes silent and the server is then killed: every decision gets the policy within its
    deadline, nothing is sent a third time, and the server ran none of them."""
    clock = FakeClock(1_000_000.0)
    async with FaultProxy("127.0.0.1", private_redis.port) as proxy:
        backend = failover(f"redis://127.0.0.1:{proxy.port}/0", clock, mode)
        primary = primary_of(backend)
        pipe = primary.pipe
        try:
            await backend.hit(["{k:warm}"], WINDOW, 1)
            assert await pipe.execute(encode_command(b"SCRIPT", b"FLUSH")) == b"OK"
            commands, reloads = pipe.commands, primary.reloads
            started = time.monotonic()
            pending = asyncio.ensure_future(decide_all(backend, N, "{k:re}"))
            # Poll once per loop iteration: the EVALs go out in the iteration after the replies.
            while primary.reloads - reloads < N:  # noqa: ASYNC110
                await asyncio.sleep(0)
            # The EVALs are queued or written, not yet read by the proxy: drop them.
            proxy.set_mode("blackhole")
            proc = private_redis.proc
            assert proc is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
            private_redis.proc = None
            results = await asyncio.wait_for(pending, 5)
            # The first deadline passed for the EVALSHA batch; the EVALs had their own.
            assert time.monotonic() - started < 2 * DEADLINE + 0.2
            assert_policy(results, mode)
            assert pipe.commands - commands == 2 * N  # EVALSHA once, EVAL once, no third send
            private_redis.start()
            assert llen(private_redis.url, "{k:re}") == 0
        finally:
            await backend.aclose()


async def test_fixed_window_batch_with_a_reply_error_in_the_middle(redis_url: str) -> None:
    """L18: one decision in a batch of 101 fails on the server (WRONGTYPE: its key holds a
    string); it alone raises, and the 100 around it get their own replies."""
    pipe = AutoPipeline(redis_url, connect_timeout=DEADLINE, deadline=DEADLINE)
    backend = PipelinedRedisBackend(pipe, FIXED, deadline=DEADLINE)
    sync = redis.Redis.from_url(redis_url)
    try:
        await backend.hit(["{k:warm}"], WINDOW, 1)
        sync.hset("{k:bad}", "x", "1")  # a hash where the fixed window expects a counter

        async def one(key: str) -> int | str:
            try:
                return int((await backend.hit([key], [(1000, 60)], 1)).windows[0][0])
            except Exception as exc:
                return type(exc).__name__

        keys = [f"{{k:f{i % 4}}}" for i in range(50)] + ["{k:bad}"]
        keys += [f"{{k:f{i % 4}}}" for i in range(50, 100)]
        batches = pipe.batches
        results = await asyncio.gather(*(one(k) for k in keys))
        assert pipe.batches - batches == 1
        assert results[50] == "StoreError"
        for tag in range(4):
            seen = [r for k, r in zip(keys, results, strict=True) if k == f"{{k:f{tag}}}"]
            assert sorted(seen) == list(range(1, 26))
            assert int(sync.get(f"{{k:f{tag}}}") or 0) == 25
    finally:
        sync.close()
        await backend.aclose()
