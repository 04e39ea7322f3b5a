"""Cost of the network guards per request, in process (issue 4 target: <= 5 µs each).

Each request is a fresh scope with a 1 KB body, sent through the middleware to a trivial app; the
ASGI coroutine is driven without an event loop (nothing in it waits on I/O), so the figures are
the middleware's own CPU cost. ``added_us`` is the median minus the bare app's median.
"""

from __future__ import annotations

import ipaddress
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver, IPNetworkSet
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware

BODY = b"x" * 1024
BATCHES = 60
PER_BATCH = 500
PEER = "203.0.113.7"


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> Message:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def _send(message: Message) -> None:
    return None


def _drive(awaitable: Awaitable[None]) -> None:
    coro: Any = awaitable
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the benchmarked app awaited real I/O")


def _scope(headers: list[tuple[bytes, bytes]]) -> Callable[[], Scope]:
    def make() -> Scope:
        return {
            "type": "http",
            "method": "POST",
            "path": "/api/v1/items",
            "headers": list(headers),
            "client": (PEER, 1234),
        }

    return make


def _batch_us(app: ASGIApp, make_scope: Callable[[], Scope]) -> float:
    scopes = [make_scope() for _ in range(PER_BATCH)]
    start = time.perf_counter_ns()
    for scope in scopes:
        _drive(app(scope, _receive, _send))
    return (time.perf_counter_ns() - start) / PER_BATCH / 1000


_SHARED = ClientIPResolver()


def _resolved(make: Callable[[], Scope]) -> Callable[[], Scope]:
    """Scopes whose client IP an outer layer (audit, say) already resolved."""

    def make_resolved() -> Scope:
        scope = make()
        _SHARED.resolve(scope)
        return scope

    return make_resolved


def _measure(cases: list[tuple[str, ASGIApp, Callable[[], Scope]]]) -> dict[str, list[float]]:
    """Run the cases round-robin, so load from other processes hits every case alike."""
    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _name, app, make_scope in cases:
        _batch_us(app, make_scope)  # warm up
    for _ in range(BATCHES):
        for name, app, make_scope in cases:
            samples[name].append(_batch_us(app, make_scope))
    return samples


def _networks(count: int, *, same_length: bool = False, seed: int = 4) -> list[str]:
    """``count`` random IPv4 CIDRs not containing PEER: all /24, or prefix lengths 8-32 (worst)."""
    rng = random.Random(seed)
    peer = ipaddress.IPv4Address(PEER)
    nets: set[str] = set()
    while len(nets) < count:
        plen = 24 if same_length else rng.randint(8, 32)
        net = ipaddress.IPv4Network((rng.getrandbits(32), plen), strict=False)
        if peer not in net:
            nets.add(str(net))
    return sorted(nets)


def run() -> list[dict[str, Any]]:
    """Measure each guard; one row per case: name, median_us, min_us, added_us (median - bare)."""
    with_length = _scope([(b"content-length", b"1024"), (b"content-type", b"application/json")])
    chunked = _scope([(b"transfer-encoding", b"chunked")])
    allow_1 = ["203.0.113.0/24"]
    allow_1000 = [*_networks(999), "203.0.113.0/24"]
    allow_1000_same = [*_networks(999, same_length=True), "203.0.113.0/24"]
    cases: list[tuple[str, ASGIApp, Callable[[], Scope]]] = [
        ("bare app (1 KB body)", _app, with_length),
        ("body limit, Content-Length", BodySizeLimitMiddleware(_app), with_length),
        ("body limit, chunked, read-ahead", BodySizeLimitMiddleware(_app), chunked),
        (
            "body limit, chunked, streamed",
            BodySizeLimitMiddleware(_app, read_ahead_limit=0),
            chunked,
        ),
        ("ip allowlist, 1 CIDR", IPAllowlistMiddleware(_app, allow=allow_1), with_length),
        (
            "ip allowlist, 1000 CIDRs (25 lengths)",
            IPAllowlistMiddleware(_app, allow=allow_1000),
            with_length,
        ),
        (
            "ip allowlist, 1000 CIDRs (all /24)",
            IPAllowlistMiddleware(_app, allow=allow_1000_same),
            with_length,
        ),
        (
            "ip allowlist, 1000 CIDRs, IP pre-resolved",
            IPAllowlistMiddleware(_app, allow=allow_1000, client_ip=_SHARED),
            _resolved(with_length),
        ),
        (
            "both guards, 1000 CIDRs",
            BodySizeLimitMiddleware(IPAllowlistMiddleware(_app, allow=allow_1000)),
            with_length,
        ),
    ]
    samples = _measure(cases)
    base = statistics.median(samples[cases[0][0]])
    rows: list[dict[str, Any]] = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append(
            {
                "name": name,
                "median_us": round(median, 2),
                "min_us": round(min(values), 2),
                "added_us": round(median - base, 2),
            }
        )
    lists = {
        "1 CIDR": allow_1,
        "1000 CIDRs (all /24)": allow_1000_same,
        "1000 CIDRs (25 lengths)": allow_1000,
    }
    rows.extend(_decision_rows(lists))
    return rows


def _decision_rows(lists: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Uncached membership (what a new client address costs): IPNetworkSet.contains."""
    rows = []
    addr = ipaddress.IPv4Address(PEER)
    for label, entries in lists.items():
        nets = IPNetworkSet(entries)
        samples = []
        for _ in range(BATCHES):
            start = time.perf_counter_ns()
            for _ in range(PER_BATCH):
                nets.contains(addr)
            samples.append((time.perf_counter_ns() - start) / PER_BATCH / 1000)
        rows.append(
            {
                "name": f"membership test, {label}",
                "median_us": round(statistics.median(samples), 2),
                "min_us": round(min(samples), 2),
            }
        )
    return rows


def main() -> None:
    """Print the table."""
    print(f"{'case':<40} {'median µs':>10} {'min µs':>8} {'added µs':>9}")
    for row in run():
        added = f"{row['added_us']:>9.2f}" if "added_us" in row else ""
        print(f"{row['name']:<40} {row['median_us']:>10.2f} {row['min_us']:>8.2f} {added}")


if __name__ == "__main__":
    main()
