"""The lean Redis path: auto-pipelined decisions under faults, NOSCRIPT mid-batch, exactness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import pytest
import redis

from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.ratelimit._result import MOVING, SLIDING, HitResult
from extapi_kit.ratelimit.fallback import FailoverBackend
from extapi_kit.ratelimit.redis_pipeline import PipelinedRedisBackend
from extapi_kit.stores._resp import AutoPipeline, encode_command
from extapi_kit.testing import FakeClock
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

DEADLINE = 0.25
WINDOW = [(1_000_000, 60)]


def failover(url: str, strategy: int, clock: FakeClock, mode: str = "open") -> FailoverBackend:
    pipe = AutoPipeline(url, connect_timeout=DEADLINE, deadline=DEADLINE)
    primary = PipelinedRedisBackend(pipe, strategy, deadline=DEADLINE)
    return FailoverBackend(
        primary, strategy, clock=clock, deadline=DEADLINE, failure_mode=mode, probe_interval=1.0
    )


def pipe_of(backend: FailoverBackend) -> AutoPipeline:
    primary = backend.primary
    assert isinstance(primary, PipelinedRedisBackend)
    return primary.pipe


def kill_stopped(server: RedisServer) -> None:
    # SIGKILL without SIGCONT first (RedisServer.kill resumes it, which lets it answer).
    proc = server.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    server.proc = None


async def decide_all(backend: FailoverBackend, n: int, key: str) -> list[HitResult | Exception]:
    async def one() -> HitResult | Exception:
        try:
            return await backend.hit([key], WINDOW, 1)
        except StoreUnavailableError as exc:
            return exc

    return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_killed_with_100_decisions_in_one_batch(
    private_redis: RedisServer, mode: str
) -> None:
    """L8: Redis killed under a batch of 100: each gets the policy in time, none re-sent."""
    clock = FakeClock(1_000_000.0)
    backend = failover(private_redis.url, MOVING, clock, mode)
    pipe = pipe_of(backend)
    try:
        await backend.hit(["warm"], WINDOW, 1)  # connected, script cached
        batches, commands = pipe.batches, pipe.commands
        private_redis.pause()  # the batch is written but never answered...
        started = time.monotonic()
        pending = asyncio.ensure_future(decide_all(backend, 100, "{k:a}"))
        await asyncio.sleep(0.02)
        assert (pipe.batches - batches, pipe.commands - commands) == (1, 100)
        kill_stopped(private_redis)  # ...until Redis dies under it
        results = await asyncio.wait_for(pending, 5)
        elapsed = time.monotonic() - started
        assert elapsed < DEADLINE + 0.2
        if mode == "open":
            assert all(isinstance(r, HitResult) and r.allowed and r.degraded for r in results)
        else:
            assert all(isinstance(r, StoreUnavailableError) for r in results)
        # A fresh Redis on the same port: nothing of the failed batch is replayed into it.
        private_redis.start()
        clock.advance(2.0)  # past the probe interval
        for _ in range(5):
            result = await backend.hit(["{k:a}"], WINDOW, 1)
            assert not result.degraded
        # 100 + 5 commands, and one EVAL re-sent after the new server's first NOSCRIPT.
        assert pipe.commands - commands == 106
        sync = redis.Redis.from_url(private_redis.url)
        try:
            assert sync.llen("{k:a}") == 5
        finally:
            sync.close()
    finally:
        await backend.aclose()


async def test_hung_redis_batch_decided_within_deadline_and_replies_stay_paired(
    private_redis: RedisServer,
) -> None:
    """L9: Redis SIGSTOPped under a batch of 100: all decided by the deadline, then healed."""
    clock = FakeClock(1_000_000.0)
    backend = failover(private_redis.url, MOVING, clock)
    try:
        await backend.hit(["warm"], WINDOW, 1)
        private_redis.pause()
        started = time.monotonic()
        results = await asyncio.wait_for(decide_all(backend, 100, "{k:h}"), 5)
        assert time.monotonic() - started < DEADLINE + 0.2
        assert all(isinstance(r, HitResult) and r.degraded for r in results)
        private_redis.resume()
        await asyncio.sleep(0.05)
        sync = redis.Redis.from_url(private_redis.url)
        try:
            sync.delete("{k:fresh}")
            clock.advance(2.0)
            # Each later caller reads its own reply: the count grows by one per decision.
            for expected in range(1, 6):
                result = await backend.hit(["{k:fresh}"], [(10, 60)], 1)
                assert not result.degraded
                assert result.windows[0][0] == expected
        finally:
            sync.close()
    finally:
        await backend.aclose()


async def test_noscript_mid_batch_is_reloaded_once_and_nothing_applied_twice(
    redis_url: str,
) -> None:
    """L10: SCRIPT FLUSH mid-batch: the rest re-run as EVAL once each; the count is exact."""
    clock = FakeClock(1_000_000.0)
    backend = failover(redis_url, MOVING, clock)
    pipe = pipe_of(backend)
    primary = backend.primary
    assert isinstance(primary, PipelinedRedisBackend)
    try:
        await backend.hit(["{k:warm}"], WINDOW, 1)
        batches, reloads = pipe.batches, primary.reloads

        async def flush_scripts() -> Any:
            return await pipe.execute(encode_command(b"SCRIPT", b"FLUSH"))

        calls: list[Any] = [backend.hit(["{k:n}"], WINDOW, 1) for _ in range(25)]
        calls.append(flush_scripts())
        calls.extend(backend.hit(["{k:n}"], WINDOW, 1) for _ in range(25))
        results = await asyncio.gather(*calls)
        # One batch of 51 commands, then one of the 25 re-sent EVALs.
        assert pipe.batches - batches == 2
        assert primary.reloads - reloads == 25
        hits = [r for r in results if isinstance(r, HitResult)]
        assert len(hits) == 50 and not any(r.degraded for r in hits)
        assert sorted(int(r.windows[0][0]) for r in hits) == list(range(1, 51))
        sync = redis.Redis.from_url(redis_url)
        try:
            assert sync.llen("{k:n}") == 50
        finally:
            sync.close()
    finally:
        await backend.aclose()


@pytest.mark.parametrize("strategy", [MOVING, SLIDING])
async def test_300_concurrent_at_limit_50_admit_exactly_50_in_shared_batches(
    redis_url: str, strategy: int
) -> None:
    """L1: 300 concurrent decisions at L=50 on the pipelined path: exactly 50, in shared batches."""
    backend = failover(redis_url, strategy, FakeClock(1_000_000.0))
    pipe = pipe_of(backend)
    try:
        await backend.hit(["{k:warm}"], WINDOW, 1)
        batches, commands = pipe.batches, pipe.commands
        results = await asyncio.gather(
            *(backend.hit([f"{{k:x{strategy}}}"], [(50, 60)], 1) for _ in range(300))
        )
        assert sum(r.allowed for r in results) == 50
        assert not any(r.degraded for r in results)
        assert pipe.commands - commands == 300
        assert pipe.batches - batches < 30  # shared round trips, not one each
    finally:
        await backend.aclose()


async def test_cancelled_callers_leave_every_other_reply_paired(redis_url: str) -> None:
    """L11: callers cancelled mid-batch drop only their own replies; all others stay paired."""
    backend = failover(redis_url, MOVING, FakeClock(1_000_000.0))
    try:
        await backend.hit(["{k:warm}"], WINDOW, 1)
        tasks = [
            asyncio.ensure_future(backend.hit([f"{{k:c{i}}}"], [(100, 60)], 1)) for i in range(20)
        ]
        await asyncio.sleep(0)  # all written in one batch
        for task in tasks[::2]:
            task.cancel()
        done = await asyncio.gather(*tasks[1::2])
        assert all(not r.degraded and r.windows[0][0] == 1 for r in done)
        for i in range(1, 20, 2):  # each key's own count comes back to its own caller
            result = await backend.hit([f"{{k:c{i}}}"], [(100, 60)], 1)
            assert (result.degraded, result.windows[0][0]) == (False, 2)
    finally:
        await backend.aclose()


async def test_password_and_database_from_the_url_and_no_secret_in_errors(
    private_redis: RedisServer,
) -> None:
    """A10: AUTH and SELECT come from the URL; a refused password never shows in the error."""
    sync = redis.Redis.from_url(private_redis.url)
    try:
        sync.config_set("requirepass", "s3cret-pw")
        base = f"127.0.0.1:{private_redis.port}"
        good = AutoPipeline(f"redis://default:s3cret-pw@{base}/2", deadline=DEADLINE)
        backend = PipelinedRedisBackend(good, MOVING, deadline=DEADLINE)
        try:
            assert (await backend.hit(["{k:db}"], WINDOW, 1)).windows[0][0] == 1
        finally:
            await backend.aclose()
        authed = redis.Redis.from_url(f"redis://:s3cret-pw@{base}/2")
        try:
            assert authed.llen("{k:db}") == 1
        finally:
            authed.close()
        bad = AutoPipeline(f"redis://:wrong-pw@{base}/0", deadline=DEADLINE)
        with pytest.raises(ConnectionError) as info:
            await bad.execute(encode_command(b"PING"))
        assert "pw" not in str(info.value) and "pw" not in repr(bad)
        await bad.aclose()
    finally:
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(private_redis.url, password="s3cret-pw").config_set(
                "requirepass", ""
            )
        sync.close()


async def test_replies_split_across_reads_resolve_in_order() -> None:
    """L11: replies arriving one byte at a time (nested arrays, bulk, nil, errors) stay in order."""
    from extapi_kit.stores._resp import ReplyError, _Protocol

    proto = _Protocol(AutoPipeline("redis://127.0.0.1:1/0"))
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(5)]
    proto.waiters.extend(futures)
    stream = (
        b"*3\r\n:1\r\n*2\r\n$3\r\nabc\r\n$-1\r\n:-7\r\n"
        b"+PONG\r\n-NOSCRIPT No script\r\n:42\r\n*0\r\n"
    )
    for i in range(len(stream)):
        proto.data_received(stream[i : i + 1])
    assert futures[0].result() == [1, [b"abc", None], -7]
    assert futures[1].result() == b"PONG"
    error = futures[2].result()
    assert isinstance(error, ReplyError) and error.message.startswith("NOSCRIPT")
    assert (futures[3].result(), futures[4].result()) == (42, [])
    assert not proto.buf
