"""Local leases: never over the limit, leftovers come back, early refusals only (L20-L22)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.ratelimit._result import MOVING
from extapi_kit.ratelimit.fallback import FailoverBackend
from extapi_kit.ratelimit.leases import LeaseBackend, LeasedRedis
from extapi_kit.stores._resp import AutoPipeline
from extapi_kit.testing import FakeClock

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400


class Mono:
    """A settable monotonic clock (lease lifetimes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease_backend(url: str, block: int, ttl: float = 1.0, mono: Any = None) -> LeaseBackend:
    pipe = AutoPipeline(url, connect_timeout=2, deadline=2)
    if mono is None:
        return LeaseBackend(pipe, block=block, ttl=ttl, deadline=2)
    return LeaseBackend(pipe, block=block, ttl=ttl, deadline=2, monotonic=mono)


def charged(url: str, key: str) -> int:
    sync = redis.Redis.from_url(url)
    try:
        return int(sync.hget(key + ":lease", "c") or 0)
    finally:
        sync.close()


@pytest.mark.anyio
async def test_one_worker_admits_exactly_the_limit_under_300_concurrent(redis_url: str) -> None:
    """L20: 300 concurrent requests at L=50 on one leasing worker: exactly 50 admitted, in a
    handful of round trips (blocks of 20, then halves of what is left)."""
    backend = lease_backend(redis_url, block=20)
    try:
        results = await asyncio.gather(
            *(backend.hit(["{k:one}"], [(50, 60)], 1) for _ in range(300))
        )
        assert sum(r.allowed for r in results) == 50
        assert backend.renewals < 300 // 10
        assert charged(redis_url, "{k:one}") == 50
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_renewing_ahead_keeps_every_decision_off_the_round_trip(redis_url: str) -> None:
    """L20: with renew_at (a quarter of the grant, the default) the next block is asked for in
    the background while the leftover is spent: after the first, 200 decisions paced like
    steady traffic never wait for Redis; with renew_at=0 one in each block does. Redis counts
    exactly what was admitted once the leases end."""
    keys, windows = ["{k:ahead}"], [(100_000, 3600)]
    ahead = lease_backend(redis_url, block=20)
    lazy = LeaseBackend(
        AutoPipeline(redis_url, connect_timeout=2, deadline=2), block=20, deadline=2, renew_at=0
    )
    try:
        assert (await ahead.hit(keys, windows, 1)).allowed
        assert (await lazy.hit(["{k:lazy}"], windows, 1)).allowed
        for _ in range(200):
            assert (await ahead.hit(keys, windows, 1)).allowed
            assert (await lazy.hit(["{k:lazy}"], windows, 1)).allowed
            await asyncio.sleep(0.002)  # the next request comes a little later
        # In the callers' path: the first renewal only, and no caller waited for one.
        assert ahead.renewals - ahead.ahead == 1 and ahead.waits == 0
        assert ahead.ahead >= 200 // 20 - 1
        # Without renewing ahead, one decision in each block makes the round trip itself.
        assert lazy.ahead == 0 and lazy.renewals >= 200 // 20
        await ahead.release()
        await lazy.release()
        assert charged(redis_url, "{k:ahead}") == 201
        assert charged(redis_url, "{k:lazy}") == 201
    finally:
        await ahead.aclose()
        await lazy.aclose()


@pytest.mark.anyio
async def test_two_workers_never_over_admit_and_give_leftovers_back(redis_url: str) -> None:
    """L20: two workers (own connections) take turns on one key at L=50 with blocks of 20: the
    sum admitted never passes 50 even while both hold leases; once both release, the shared
    counter equals exactly what was admitted (no unit lost or invented)."""
    a, b = lease_backend(redis_url, block=20), lease_backend(redis_url, block=20)
    keys, windows = ["{k:two}"], [(50, 60)]
    try:
        admitted = 0
        for _ in range(40):
            ra = await asyncio.gather(*(a.hit(keys, windows, 1) for _ in range(3)))
            rb = await asyncio.gather(*(b.hit(keys, windows, 1) for _ in range(2)))
            admitted += sum(r.allowed for r in (*ra, *rb))
            assert admitted <= 50
            assert charged(redis_url, "{k:two}") <= 50
        await a.release()
        await b.release()
        assert charged(redis_url, "{k:two}") == admitted
        assert 40 <= admitted <= 50  # early refusals are bounded by what sits in leases
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.anyio
async def test_an_idle_workers_lease_comes_back_after_its_ttl(redis_url: str) -> None:
    """L21: worker A leases half of a budget of 20 and goes idle; B gets the other half (in
    shrinking blocks) and is then refused early (9 units sit in A's lease) with a Retry-After no
    later than the lease ttl; after A's ttl its timer gives the 9 back, B is admitted 9 more
    times, then refused at the exact limit with the window's own reset."""
    mono = Mono()
    a = lease_backend(redis_url, block=20, ttl=5.0, mono=mono)
    b = lease_backend(redis_url, block=20, ttl=5.0, mono=mono)
    keys, windows = ["{k:idle}"], [(20, DAY)]
    try:
        assert (await a.hit(keys, windows, 1)).allowed
        assert charged(redis_url, "{k:idle}") == 10
        first = [await b.hit(keys, windows, 1) for _ in range(11)]
        assert [r.allowed for r in first] == [True] * 10 + [False]
        assert 0 < first[-1].windows[0][2] <= 5.0
        mono.now += 5.0
        assert await a.return_expired() == 1
        assert charged(redis_url, "{k:idle}") == 11
        results = [await b.hit(keys, windows, 1) for _ in range(10)]
        assert [r.allowed for r in results] == [True] * 9 + [False]
        assert results[-1].windows[0][2] > 5.0  # nothing leased elsewhere: wait for the reset
        await b.release()
        assert charged(redis_url, "{k:idle}") == 20
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.anyio
async def test_a_lease_charges_every_window_and_the_tightest_bounds_it(redis_url: str) -> None:
    """L20: a key's window and its owner's shared window are leased together: two keys of one
    owner never pass the owner's limit, each key never passes its own."""
    backend = lease_backend(redis_url, block=8)
    own = "{o:x}own"
    try:
        tally = {"a": 0, "b": 0}
        for _ in range(30):
            for name in ("a", "b"):
                r = await backend.hit([f"{{o:x}}k{name}", own], [(10, 60), (14, 60)], 1)
                tally[name] += r.allowed
        assert max(tally.values()) <= 10 and sum(tally.values()) <= 14
        await backend.release()
        assert charged(redis_url, own) == sum(tally.values())
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_redis_down_applies_the_failure_policy_and_never_double_counts(
    redis_url: str,
) -> None:
    """L20: the lease backend behind the failover layer: an unreachable Redis gives the policy
    (no 500); a lease's units are never counted twice after recovery."""
    bad = LeaseBackend(AutoPipeline("redis://127.0.0.1:1/0", connect_timeout=0.2), deadline=0.2)
    failover = FailoverBackend(
        bad, MOVING, clock=FakeClock(1e6), deadline=0.2, failure_mode="closed"
    )
    from extapi_kit.exceptions import StoreUnavailableError

    with pytest.raises(StoreUnavailableError):
        await failover.hit(["{k:down}"], [(5, 60)], 1)
    await failover.aclose()


def test_lease_settings_are_checked_and_the_url_password_stays_out_of_repr() -> None:
    """L20: block, ttl and renew_at bounded; one-server and cluster URLs only (not Sentinel);
    no password in the spec's repr."""
    spec = LeasedRedis("redis://:hunter2-pw@127.0.0.1:6390/0", block=5, ttl=0.5)
    assert "hunter2" not in repr(spec) and "block=5" in repr(spec)
    spec = LeasedRedis("redis+cluster://u:hunter2-pw@127.0.0.1:7000,127.0.0.1:7001/", block=5)
    assert "hunter2" not in repr(spec) and "127.0.0.1:7001" in repr(spec) and spec.cluster
    for bad in (
        {"block": 0},
        {"block": True},
        {"block": 10**7},
        {"ttl": 0},
        {"ttl": float("nan")},
        {"ttl": 1e9},
        {"renew_at": 1},
        {"renew_at": -0.1},
        {"renew_at": True},
    ):
        with pytest.raises(ConfigurationError):
            LeasedRedis("redis://127.0.0.1/0", **bad)
    for url in ("redis+sentinel://127.0.0.1:26379/mymaster", "rediss+cluster://127.0.0.1:7000/"):
        with pytest.raises(ConfigurationError, match="redis\\+cluster://"):
            LeasedRedis(url)


# ---------------------------------------------------------------------------------------------
# The invariant across two processes: a state machine against a model (L22)
# ---------------------------------------------------------------------------------------------

CHILD = r"""
import asyncio, json, sys
from extapi_kit.ratelimit.leases import LeaseBackend
from extapi_kit.stores._resp import AutoPipeline

url, block, ttl = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
clock = [1000.0]

def new_backend():
    clock[0] = 1000.0
    # renew_at=0: renewing ahead runs in the background, where the model cannot predict when;
    # the model checks the protocol itself (test_renewing_ahead_* cover that path).
    backend = LeaseBackend(AutoPipeline(url, connect_timeout=5, deadline=5), block=block,
                           ttl=ttl, deadline=5, monotonic=lambda: clock[0], renew_at=0)
    backend._arm = lambda: None  # the machine sweeps (rule "expire"), not a real-time timer
    return backend

async def main():
    loop = asyncio.get_running_loop()
    backend = new_backend()
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd = json.loads(line)
        op = cmd["op"]
        out = {}
        if op == "reset":  # a new example: forget every lease (its keys are never used again)
            await backend._pipe.aclose()
            backend = new_backend()
        elif op == "hit":
            keys = cmd["keys"]
            windows = [tuple(w) for w in cmd["windows"]]
            r = await backend.hit(keys, windows, cmd["cost"])
            lease = backend.leases.get((tuple(keys), tuple(windows)))
            out = {"allowed": r.allowed, "idx": lease.idx if lease else None}
        elif op == "advance":
            clock[0] += cmd["s"]
        elif op == "expire":
            out = {"closed": await backend.return_expired()}
        elif op == "release":
            await backend.release()
        print(json.dumps(out), flush=True)

asyncio.run(main())
"""

BLOCK, TTL = 4, 10.0
LIMIT_KEY, LIMIT_OWNER = 9, 14


class Worker:
    def __init__(self, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(BLOCK), str(TTL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        assert json.loads(self.read()) == {"ready": True}

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "lease worker died"
        return line

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.read()))

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()


class _Lease:
    def __init__(self, granted: int, started: float) -> None:
        self.granted = granted
        self.left = granted
        self.started = started


class LeaseMachine(RuleBasedStateMachine):
    """Two worker processes lease from one Redis; the model predicts every answer exactly.

    The model keeps, per Redis window key, the units charged (admitted + held in leases, alive
    or stranded by a killed worker) and per worker and lease key its lease. Both lease keys
    share the owner's window, so the tightest window bounds each grant.
    """

    url = ""
    run = 0
    pool: list[Worker] = []
    sync: redis.Redis | None = None

    def __init__(self) -> None:
        super().__init__()
        LeaseMachine.run += 1
        tag = f"{{o:m{LeaseMachine.run}-{os.getpid()}}}"
        self.owner_key = tag + "own"
        self.lease_keys = {
            name: ([f"{tag}k{name}", self.owner_key], [[LIMIT_KEY, DAY], [LIMIT_OWNER, DAY]])
            for name in ("a", "b")
        }
        if not LeaseMachine.pool:  # two processes for the whole test, reset per example
            LeaseMachine.pool = [Worker(self.url), Worker(self.url)]
        self.workers = LeaseMachine.pool
        for w in self.workers:
            w.ask(op="reset")
        self.clock = [1000.0, 1000.0]
        self.leases: list[dict[str, _Lease]] = [{}, {}]
        self.charged: dict[str, int] = {}
        self.admitted: dict[str, int] = {}
        self.rolled = False
        self.idx: list[int] | None = None

    def _limits(self, name: str) -> list[tuple[str, int]]:
        keys, windows = self.lease_keys[name]
        return [(k, w[0]) for k, w in zip(keys, windows, strict=True)]

    def _give_back(self, name: str, lease: _Lease) -> None:
        for key, _ in self._limits(name):
            self.charged[key] = self.charged.get(key, 0) - lease.left

    @rule(
        worker=st.integers(0, 1),
        name=st.sampled_from(["a", "b"]),
        cost=st.sampled_from([0, 1, 2, 3]),
    )
    def hit(self, worker: int, name: str, cost: int) -> None:
        keys, windows = self.lease_keys[name]
        reply = self.workers[worker].ask(op="hit", keys=keys, windows=windows, cost=cost)
        if reply["idx"] is not None:
            if self.idx is None:
                self.idx = reply["idx"]
            elif reply["idx"] != self.idx:  # a real day boundary passed mid-run
                self.rolled = True
        lease = self.leases[worker].get(name)
        now = self.clock[worker]
        if lease is not None and now < lease.started + TTL and lease.left >= cost:
            expected = True
            lease.left -= cost
        else:
            if lease is not None:
                self._give_back(name, lease)
                del self.leases[worker][name]
            frees = [limit - self.charged.get(k, 0) for k, limit in self._limits(name)]
            grant = min(min(f, max(cost, min(BLOCK, f // 2))) for f in frees)
            expected = grant >= cost
            if expected:
                for key, _ in self._limits(name):
                    self.charged[key] = self.charged.get(key, 0) + grant
                new = self.leases[worker][name] = _Lease(grant, now)
                new.left -= cost
        if expected and reply["allowed"]:
            for key, _ in self._limits(name):
                self.admitted[key] = self.admitted.get(key, 0) + cost
        if not self.rolled:
            assert reply["allowed"] == expected, (worker, name, cost, self.charged)

    @rule(worker=st.integers(0, 1), seconds=st.sampled_from([1.0, 4.0, 11.0]))
    def advance(self, worker: int, seconds: float) -> None:
        self.workers[worker].ask(op="advance", s=seconds)
        self.clock[worker] += seconds

    @rule(worker=st.integers(0, 1))
    def expire(self, worker: int) -> None:
        reply = self.workers[worker].ask(op="expire")
        ended = [
            n
            for n, lease in self.leases[worker].items()
            if self.clock[worker] >= lease.started + TTL
        ]
        for name in ended:
            self._give_back(name, self.leases[worker].pop(name))
        assert reply["closed"] == len(ended)

    @rule(worker=st.integers(0, 1))
    def release(self, worker: int) -> None:
        self.workers[worker].ask(op="release")
        for name, lease in self.leases[worker].items():
            self._give_back(name, lease)
        self.leases[worker] = {}

    @precondition(lambda self: any(self.leases))
    @rule(worker=st.integers(0, 1))
    def crash(self, worker: int) -> None:
        # SIGKILL: the worker's leftovers stay charged (stranded), never given to anyone.
        self.workers[worker].kill()
        self.workers[worker] = Worker(self.url)
        self.clock[worker] = 1000.0
        self.leases[worker] = {}

    @invariant()
    def never_over_the_limit(self) -> None:
        for name in ("a", "b"):
            for key, limit in self._limits(name):
                assert self.admitted.get(key, 0) <= limit

    @invariant()
    def redis_counts_what_the_model_counts(self) -> None:
        if self.rolled:
            return
        if LeaseMachine.sync is None:
            LeaseMachine.sync = redis.Redis.from_url(self.url)
        for key, charged_units in self.charged.items():
            assert int(LeaseMachine.sync.hget(key + ":lease", "c") or 0) == charged_units, key


def test_leases_never_over_admit_across_two_processes(redis_url: str) -> None:
    """L22: a hypothesis state machine drives two worker processes leasing one key pair from a
    real Redis (hits of cost 0-3, clocks advanced past lease ttls, expiry sweeps, releases,
    SIGKILLed workers): no window ever admits more than its limit, each answer (admit or
    refuse) is the model's, and Redis's counters equal the model's after every step."""
    LeaseMachine.url = redis_url
    runner = LeaseMachine.TestCase
    runner.settings = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        # Generation only: a failing run prints its steps; shrinking respawns slow processes.
        phases=[Phase.generate],
    )
    try:
        runner("runTest").runTest()
    finally:
        for w in LeaseMachine.pool:
            w.stop()
        LeaseMachine.pool = []
        if LeaseMachine.sync is not None:
            LeaseMachine.sync.close()
            LeaseMachine.sync = None


@pytest.mark.anyio
async def test_build_wires_leases_and_refuses_them_without_one_redis(redis_url: str) -> None:
    """L20: build(rate_limit_leases=N) puts a LeaseBackend behind the failover layer; leases
    on in-process storage are a configuration error, not a silent no-op."""
    api, leases = await build_with_leases_admits_the_limit(redis_url)
    assert leases.block == 5
    await leases.aclose()
    with pytest.raises(ConfigurationError):
        api.build(auth=False, audit_sink=None, rate_limit_leases=5)


async def build_with_leases_admits_the_limit(
    url: str, deadline: float | None = None
) -> tuple[Any, LeaseBackend]:
    """Build a one-route stack on ``url`` with leases of 5 at 7/minute, check it admits exactly
    7 of 10 from leases (never from the in-process fallback) and return the registry and the
    lease backend behind the failover layer.

    Args:
        url: the Redis URL.
        deadline: the rate limiter's deadline (default: build()'s); a cold cluster client reads
            its slot map within it.
    """
    from extapi_kit.middleware.rate_limit import RateLimitMiddleware
    from extapi_kit.routing import ExternalAPI, HandlerRequest

    api = ExternalAPI()

    @api.get("/ping", public=True)
    async def ping(req: HandlerRequest) -> dict[str, str]:
        return {"ok": "yes"}

    options = {"rate_limit": {"deadline": deadline}} if deadline is not None else {}
    app = api.build(
        auth=False,
        audit_sink=None,
        rate_limit_storage=url,
        rate_limit_leases=5,
        read="7/minute",
        options=options,
    )
    layer: Any = app
    while not isinstance(layer, RateLimitMiddleware):
        layer = layer.app
    assert isinstance(layer.backend, FailoverBackend)
    leases = layer.backend.primary
    assert isinstance(leases, LeaseBackend)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        codes = [(await client.get("/api/v1/ping")).status_code for _ in range(10)]
    assert codes == [200] * 7 + [429] * 3
    # Decided from leases: the fallback (7 of 10 too, with one worker) never stepped in.
    assert not layer.backend.degraded and leases.renewals >= 2
    return api, leases
